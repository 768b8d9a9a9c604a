"""Run a checkout's own gen_images.py on the CPU: ``python official_gen_images.py CHECKOUT [options...]``.

The official script hard-codes ``torch.device('cuda')``; this runner executes the checkout's file as is,
except that one expression, which it replaces with ``torch.device('cpu')`` in memory (the file on disk is
not touched). The checkout is imported through extensions.stylegan.checkout, so it loads on stacks that
lack pkg_resources, distutils or requests. ``OFFICIAL_ON_CUDA=1`` keeps the CUDA device. With ``HIDE_PLUGIN=1`` in the environment, the script cannot
import ``extensions.stylegan.cli``, as where the plugin is not installed.
"""

import os
import sys
from pathlib import Path

from extensions.stylegan.checkout import activate, find_checkout

CUDA = "torch.device('cuda')"


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "extensions.stylegan.cli":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def main():
    root = Path(sys.argv[1]).resolve()
    activate(find_checkout(root))
    script = root / "gen_images.py"
    source = script.read_text(encoding="utf-8")
    if source.count(CUDA) != 1:
        raise SystemExit(f"{script}: expected one {CUDA!r}, found {source.count(CUDA)}")
    if not os.environ.get("OFFICIAL_ON_CUDA"):
        source = source.replace(CUDA, "torch.device('cpu')")
    code = compile(source, str(script), "exec")
    if os.environ.get("HIDE_PLUGIN"):
        sys.meta_path.insert(0, _Hide())
    sys.argv = [str(script)] + sys.argv[2:]
    exec(code, {"__name__": "__main__", "__file__": str(script)})


if __name__ == "__main__":
    main()
