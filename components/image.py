"""The one project image every component runs in (built from ``docker/Dockerfile``).

Pin it here, by tag or better by digest (``REGISTRY/restore-r1@sha256:...``) once pushed; see
docs/kubeflow.md ("Build and push the project image"). ``python -m pipelines.compile --image REF`` compiles with another reference
(it sets ``$RESTORE_R1_IMAGE`` before the components are imported).
"""

from __future__ import annotations

import os

#: Environment variable that overrides :data:`DEFAULT_IMAGE` at compile time.
IMAGE_ENV = "RESTORE_R1_IMAGE"
#: The pinned project image.
DEFAULT_IMAGE = "ghcr.io/restore-r1/restore-r1:0.1.0"
#: What the components use.
IMAGE = os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
