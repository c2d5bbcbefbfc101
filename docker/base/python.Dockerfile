# The local stand-in for python:3.11-slim-bookworm (docker/Dockerfile's PYTHON_IMAGE) that
# `make images` builds where no image registry can be reached: Debian bookworm's Python 3.11 in a
# venv at /usr/local/python, first on PATH, so that `python` and `pip` work as in the official image
# (Debian's own python3 refuses `pip install`, PEP 668). DEBIAN_IMAGE is a Debian root file system
# built by mmdebstrap and imported (restore_r1/deploy/images.py).
ARG DEBIAN_IMAGE=localhost/restore-r1-base/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /usr/local/python \
 && /usr/local/python/bin/python -m pip --version
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
