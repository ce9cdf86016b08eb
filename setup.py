"""Build hook: the wheel carries the top-level `templates/` as `newsletter/templates/`.

The templates stay at the top of the repository where people look for them; an installed
package has no repository around it, so the build copies them into the package. An
editable install reads them from the checkout instead. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TEMPLATES = Path(__file__).resolve().parent / "templates"


class BuildWithTemplates(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "newsletter" / "templates"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(TEMPLATES, target)


setup(cmdclass={"build_py": BuildWithTemplates})
