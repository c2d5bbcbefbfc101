"""`make images` and `make e2e` (restore_r1.deploy.images, restore_r1.deploy.e2e): the parts that need
no podman. The builds and the run themselves are not in `make test` (time, disk): bench/results/e2e.md."""

from __future__ import annotations

import re

import pytest

from restore_r1.deploy import e2e, images

LISTING = """global.cert='/etc/ssl/certs/ca-certificates.crt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/more/simple https://example.org/simple'
global.find-links='/opt/wheels'
install.no-compile='1'
:env:.find-links='/opt/env-wheels'
:env:.default-timeout='180'
"""


def test_pip_config_listing_is_parsed_with_the_environment_winning():
    settings = images.parse_pip_config(LISTING)
    assert settings["global"]["find-links"] == "/opt/env-wheels"
    assert settings["global"]["default-timeout"] == "180"
    assert settings["install"] == {"no-compile": "1"}
    assert images.parse_pip_config("") == {}


def test_local_paths_mount_index_roots_and_move_under_dev(tmp_path):
    settings = images.parse_pip_config(LISTING)
    existing = {"/etc/ssl/certs/ca-certificates.crt", "/opt/pypi/simple", "/opt/more/simple", "/opt/env-wheels"}
    paths = images.local_paths(settings, exists=existing.__contains__)
    # An index's files lie beside it (../../files/...): its parent is mounted. URLs are not paths.
    assert paths == ["/etc/ssl/certs/ca-certificates.crt", "/opt/env-wheels", "/opt/more", "/opt/pypi"]
    moved = images.in_build(settings, paths)["global"]
    assert moved["extra-index-url"] == f"file://{images.HOST_IN_BUILD}/opt/pypi/simple file://{images.HOST_IN_BUILD}/opt/more/simple https://example.org/simple"
    assert moved["cert"] == f"{images.HOST_IN_BUILD}/etc/ssl/certs/ca-certificates.crt"
    assert images.HOST_IN_BUILD.startswith("/dev/"), "the runtime's /dev tmpfs: no mount point is committed to a layer"


def test_pip_mounts_write_the_conf_and_name_it_by_arg(tmp_path):
    options, args = images.pip_mounts("global.find-links='%s'\n" % tmp_path, tmp_path / "pip.conf")
    assert args == {"PIP_CONFIG_FILE": f"{images.HOST_IN_BUILD}/pip.conf"}
    assert options == ["-v", f"{tmp_path / 'pip.conf'}:{images.HOST_IN_BUILD}/pip.conf:ro", "-v", f"{tmp_path}:{images.HOST_IN_BUILD}{tmp_path}:ro"]
    assert f"find-links = {images.HOST_IN_BUILD}{tmp_path}" in (tmp_path / "pip.conf").read_text()
    assert images.pip_mounts("", tmp_path / "none.conf") == ([], {})


def test_every_pip_stage_declares_the_arg_and_the_images_record_what_they_are():
    for dockerfile in ("Dockerfile", "serving.Dockerfile", "base/tritonserver.Dockerfile"):
        text = (images.REPO_ROOT / "docker" / dockerfile).read_text()
        stages = re.split(r"^FROM ", text, flags=re.M)[1:]
        for stage in stages:
            if re.search(r"\bpip (install|download)\b", stage):
                assert re.search(r"^ARG PIP_CONFIG_FILE$", stage, re.M), (dockerfile, stage.splitlines()[0])
    component = (images.REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert "pip freeze --all > /opt/restore-r1/pip-freeze.txt" in component
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in component


def test_build_command_uses_no_registry_and_the_ignore_file():
    spec = images.project_specs("0.1.0", "abc")["serving"]
    cmd = images.build_command(spec, ["-v", "/a:/b:ro"])
    assert "--pull=never" in cmd and "--network=host" in cmd
    assert cmd[cmd.index("--ignorefile") + 1].endswith("serving.Dockerfile.dockerignore")
    assert f"TRITON_IMAGE={images.BASE_TRITON}" in cmd
    assert spec.tags == ("localhost/restore-r1-triton:0.1.0", "localhost/restore-r1-triton:0.1.0-abc")
    assert cmd[-1] == str(images.REPO_ROOT)


def test_containers_conf_selects_runc_and_explicit_ulimits():
    text = images.CONTAINERS_CONF.read_text()
    assert 'runtime = "runc"' in text and "default_ulimits" in text
    assert images.podman_env({})["CONTAINERS_CONF"] == str(images.CONTAINERS_CONF)


def test_e2e_deployment_renders_with_the_local_image_ports_and_claim():
    values = e2e.local_values("localhost/restore-r1-triton", "0.1.0-abc", (18000, 18001, 18002))
    deployment = e2e.rendered_deployment(values)
    pod = deployment["spec"]["template"]["spec"]
    (triton,) = pod["containers"]
    assert triton["image"] == "localhost/restore-r1-triton:0.1.0-abc" and triton["imagePullPolicy"] == "Never"
    assert "--http-port=18000" in triton["args"] and "--http-address=127.0.0.1" in triton["args"]
    assert "--model-config-name=cpu" in triton["args"] and "--model-repository=/models" in triton["args"]
    assert {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}["models"] == e2e.CLAIM
    assert triton["securityContext"]["readOnlyRootFilesystem"] is True
    assert e2e.container_port(triton, triton["startupProbe"]["httpGet"]["port"]) == 18000


def test_played_deployment_drops_only_ports_and_emptydirs_become_kubelet_like_volumes():
    deployment = e2e.rendered_deployment(e2e.local_values("localhost/x", "1", (1, 2, 3)))
    played = e2e.for_host_network(deployment)
    assert "ports" in deployment["spec"]["template"]["spec"]["containers"][0]
    (triton,) = played["spec"]["template"]["spec"]["containers"]
    assert "ports" not in triton
    assert {k: v for k, v in triton.items()} == {k: v for k, v in deployment["spec"]["template"]["spec"]["containers"][0].items() if k != "ports"}
    assert "initContainers" not in played["spec"]["template"]["spec"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    cmd = e2e.init_container_command(deployment, init)
    assert {"--user=1000:1000", "--read-only", "--cap-drop=all", "--security-opt=no-new-privileges", "--network=none"} <= set(cmd)
    assert cmd[cmd.index("-v") + 1] == "backends:/writable-backends"
    assert cmd[-5:] == [init["image"], "cp", "-R", "/opt/tritonserver/backends/python", "/writable-backends/"]
    volumes = dict(e2e.emptydir_volumes(deployment))
    assert set(volumes) == {"tmp", "dshm", "backends"}
    assert "type=tmpfs" in volumes["dshm"] and "type=tmpfs" not in volumes["tmp"] and "nocopy" in volumes["tmp"]


def test_probe_runs_as_the_kubelet_does():
    container = {
        "name": "t",
        "ports": [{"name": "http", "containerPort": 1}],
        "startupProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
    }
    answers = iter([False, True])
    slept = []
    out = e2e.run_probe(container, "startupProbe", probe_ok=lambda url, timeout: next(answers), sleep=slept.append, clock=lambda: 0.0)
    assert out["succeeded_at_attempt"] == 2 and out["url"] == "http://127.0.0.1:1/ready" and slept == [10.0]
    with pytest.raises(e2e.E2EError, match="failed 3 times"):
        e2e.run_probe(container, "startupProbe", probe_ok=lambda url, timeout: False, sleep=lambda s: None)


def test_security_findings_need_every_setting():
    proc = {
        "Uid": "1000\t1000\t1000\t1000",
        "Gid": "1000",
        "CapEff": "0" * 16,
        "CapPrm": "0" * 16,
        "CapBnd": "0" * 16,
        "CapAmb": "0" * 16,
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }
    seen = {
        "uid": 1000,
        "gid": 1000,
        "exec": dict(proc),
        "pid1": dict(proc),
        "pid1_cmd": "/opt/tritonserver/bin/tritonserver",
        "write": {
            "/probe": "EROFS",
            "/opt/restore-r1/probe": "EACCES",
            "/home/triton-server/probe": "EROFS",
            "/models/probe": "EROFS",
            "/tmp/probe": "written",
        },
        "mounts": {"/": {"fstype": "overlay", "ro": True}},
    }
    assert all(e2e.security_findings(seen).values())
    seen["pid1"] = {**proc, "CapBnd": "00000000a80425fb"}
    assert not e2e.security_findings(seen)["no capabilities"]


def test_only_earlier_commits_images_are_removed_and_a_full_disk_is_named(tmp_path):
    listing = "localhost/restore-r1:0.1.0\nlocalhost/restore-r1:0.1.0-old\nlocalhost/restore-r1-triton:0.1.0-old\nlocalhost/other:1\n<none>:<none>\n"
    keep = images.image_tags(images.COMPONENT_REPOSITORY, "0.1.0", "new") + images.image_tags(images.SERVING_REPOSITORY, "0.1.0", "new")
    assert images.stale_tags((images.COMPONENT_REPOSITORY, images.SERVING_REPOSITORY), keep, listing) == [
        "localhost/restore-r1:0.1.0-old",
        "localhost/restore-r1-triton:0.1.0-old",
    ]
    with pytest.raises(images.ImageError, match="GB free under"):
        images.check_disk(need_gb=10**9, root=tmp_path)
