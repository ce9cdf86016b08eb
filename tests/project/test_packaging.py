"""The built wheel works on its own: installed into a fresh venv and run from a folder with
no templates, it renders a digest from the templates it carries, and
NEWSLETTER_TEMPLATES_DIR still replaces them."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.env import BACKEND, ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BACKEND != "sqlite", reason="packaging does not depend on the database: SQLite pass only"
    ),
]


def run(*args, cwd, env=None, check=True):
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding only the wheel; the dependencies come from this test run's own
    site-packages (no index needed), where the checkout is not importable."""
    tmp = tmp_path_factory.mktemp("wheel")
    # build from a copy holding only what an sdist holds: no stray build/ in the checkout,
    # and a file the build needs but the copy lacks fails here as it would for users
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("newsletter", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", dist, src, cwd=tmp)  # fmt: skip
    (wheel,) = dist.glob("newsletter-*.whl")

    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp)
    (Path(purelib.stdout.strip()) / "deps.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8"
    )
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-index", wheel, cwd=tmp)  # fmt: skip
    return venv


@pytest.fixture
def workdir(tmp_path, installed):
    """An empty folder to run in, and an environment that names no templates or database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SECRET_KEY"] = "packaging-test-secret-key-0123456789abcdef"
    env["PATH"] = f"{installed / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return tmp_path, env


def test_the_wheel_carries_the_templates(installed):
    out = run(
        installed / "bin" / "python",
        "-c",
        "import newsletter.core.settings as s;"
        " print(s.PACKAGE_DIR / '__main__.py'); print(s.Settings().templates_dir)",
        cwd=installed,
    ).stdout.split()
    module, templates = Path(out[0]), Path(out[1])
    assert module.is_relative_to(installed), "the checkout was imported, not the wheel"
    assert templates == module.parent / "templates"  # inside the installed package
    shipped = {p.relative_to(templates) for p in templates.rglob("*") if p.is_file()}
    in_repo = {p.relative_to(ROOT / "templates") for p in (ROOT / "templates").rglob("*")}
    assert shipped == {p for p in in_repo if (ROOT / "templates" / p).is_file()}


def test_installed_cli_renders_a_digest_out_of_any_folder(workdir):
    cwd, env = workdir
    assert not (cwd / "templates").exists()
    assert "AI-industry newsletter" in run("newsletter", "--help", cwd=cwd, env=env).stdout
    run("newsletter", "db", "upgrade", cwd=cwd, env=env)
    run("newsletter", "sample", "load", "--with-readers", cwd=cwd, env=env)
    preview = ["newsletter", "digest", "preview", "--frequency", "monthly", "--period", "2025-07"]
    out = run(*preview, "--email", "reader.en@example.com", "--out", "ada.html", cwd=cwd, env=env)
    assert "Subject:" in out.stdout
    html = (cwd / "ada.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "unsubscribe" in html.lower()

    # an operator's own templates still take over
    custom = cwd / "my-templates"
    shipped = run(
        "python", "-c", "from newsletter.core.settings import Settings; print(Settings().templates_dir)",
        cwd=cwd, env=env,
    ).stdout.strip()  # fmt: skip
    shutil.copytree(shipped, custom)
    layout = custom / "email" / "_layout.html.j2"
    layout.write_text(
        layout.read_text(encoding="utf-8").replace("<body", "<!-- house style --><body", 1),
        encoding="utf-8",
    )
    env = {**env, "NEWSLETTER_TEMPLATES_DIR": str(custom)}
    run(*preview, "--email", "reader.en@example.com", "--out", "own.html", cwd=cwd, env=env)
    assert "<!-- house style -->" in (cwd / "own.html").read_text(encoding="utf-8")
    assert "<!-- house style -->" not in html
