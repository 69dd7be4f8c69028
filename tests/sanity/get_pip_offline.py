# Offline stand-in for get-pip.py, which ansible-test downloads from a host that is not
# reachable here (LAB.md). Bootstraps pip from ensurepip, then installs what was asked.
# ensurepip runs in its own process: in-process it sets PIP_CONFIG_FILE=/dev/null in
# os.environ, and the pip install below would then ignore the machine's pip configuration.
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
