# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Galaxy, Automation Hub and AWX do with the collection, for real. Galaxy's importer
(galaxy-importer, with its ansible-lint run; its ansible-test run needs containers) accepts the
built artifact with no error and no warning. The execution environment for AWX: `make ee` builds the collection's artifact and runs the real
ansible-builder create on execution-environment.yml; the build context installs THIS collection
from that artifact (byte for byte), with ansible-core and ansible-runner; and ansible-builder's
introspection of the installed artifact finds the collection's Python requirements and system
packages, which is how they reach the image. (The image build itself needs container images these
machines cannot pull: it is documented, not run.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.join(TOP, ".venv", "bin")
EE_DIR = os.path.join(TOP, ".tmp", "ee")


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_make_ee_makes_a_context_that_installs_this_collection_and_its_requirements(tmp_path):
    proc = subprocess.run(["make", "-s", "-C", str(TOP), "ee"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(TOP, "galaxy.yml"), encoding="utf-8") as handle:
        version = yaml.safe_load(handle)["version"]
    artifact = os.path.join(EE_DIR, "flowstream-platform-%s.tar.gz" % version)
    context = os.path.join(EE_DIR, "context")
    # the definition names the artifact of galaxy.yml's version, and the context carries that very file
    with open(os.path.join(TOP, "execution-environment.yml"), encoding="utf-8") as handle:
        ee = yaml.safe_load(handle)
    assert ee["version"] == 3
    with open(os.path.join(context, "_build", "requirements.yml"), encoding="utf-8") as handle:
        galaxy = yaml.safe_load(handle)
    assert galaxy == {"collections": [{"name": "collections/flowstream-platform-%s.tar.gz" % version, "type": "file"}]}
    assert sha256(os.path.join(context, "_build", "collections", os.path.basename(artifact))) == sha256(artifact)
    with open(os.path.join(context, "Containerfile"), encoding="utf-8") as handle:
        containerfile = handle.read()
    for words in ('ARG EE_BASE_IMAGE="%s"' % ee["images"]["base_image"]["name"],
                  "COPY _build /build",             # the galaxy stage installs from the build context
                  "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml",
                  "introspect.py introspect",       # the collections' requirements, found in the image
                  'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.16,<2.20 ansible-runner"'):
        assert words in containerfile, (words, containerfile)
    # what the image's introspection finds in the installed collection: its requirements.txt and bindep.txt
    collections = tmp_path / "collections"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-p", str(collections), artifact],
                   capture_output=True, text=True, check=True)
    found = subprocess.run([os.path.join(BIN, "ansible-builder"), "introspect", "--sanitize", str(collections)],
                           capture_output=True, text=True, check=True).stdout
    print(found)
    for package in ("netaddr", "libvirt-python", "pyghmi"):
        assert "%s" % package in found, (package, found)
    for package in ("openssh-clients [platform:rpm]", "graphviz [platform:rpm]", "libvirt-devel [platform:rpm compile]",
                    "iproute [platform:rpm]"):
        assert package in found, (package, found)
    assert "# from collection flowstream.platform" in found, found


IMPORTER_CONFIG = """[galaxy-importer]
RUN_ANSIBLE_TEST = False
RUN_ANSIBLE_LINT = True
CHECK_REQUIRED_TAGS = False
LOG_LEVEL_MAIN = INFO
"""


def test_galaxy_importer_accepts_the_artifact_without_an_error_or_a_warning(tmp_path):
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(TOP)],
                   capture_output=True, text=True, check=True)
    (artifact,) = tmp_path.glob("flowstream-platform-*.tar.gz")
    config = tmp_path / "galaxy-importer.cfg"
    config.write_text(IMPORTER_CONFIG)
    env = dict(os.environ, GALAXY_IMPORTER_CONFIG=str(config), PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    # from a directory of its own: the checkout's ansible.cfg must not steer the importer's checks
    proc = subprocess.run([os.path.join(BIN, "python"), "-m", "galaxy_importer.main", str(artifact)], capture_output=True,
                          text=True, check=False, env=env, cwd=str(tmp_path), timeout=600)
    out = proc.stdout + proc.stderr
    said = [line for line in out.splitlines() if line.startswith(("ERROR", "WARNING"))]
    assert proc.returncode == 0 and "Importer processing completed successfully" in out and not said, (said, out[-4000:])
