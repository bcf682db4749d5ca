"""Build of pf for Linux: the Cython extensions of cuse/ and pfkern/, the pfd console script.

The header in include/ is installed separately by scripts/install-header (a private include
directory plus a pkg-config file named pfvar), never into /usr/include.
"""
import glob
import os
import subprocess

from setuptools import Extension, setup
from Cython.Build import cythonize

HERE = os.path.dirname(os.path.abspath(__file__))


def pkg_config(*args):
    out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True).stdout
    return out.split()


def flags_of(package):
    cflags = pkg_config("--cflags", package)
    libs = pkg_config("--libs", package)
    return {
        "include_dirs": [f[2:] for f in cflags if f.startswith("-I")],
        "extra_compile_args": [f for f in cflags if not f.startswith("-I")],
        "libraries": [f[2:] for f in libs if f.startswith("-l")],
    }


def extension(pyx, package=None, include_dirs=()):
    name = os.path.splitext(pyx)[0].replace(os.sep, ".")
    kw = flags_of(package) if package else {"include_dirs": [], "extra_compile_args": [], "libraries": []}
    kw["include_dirs"] = [os.path.join(HERE, "include"), *include_dirs, *kw["include_dirs"]]
    kw["extra_compile_args"] = ["-O2", "-Wno-unused-function", *kw["extra_compile_args"]]
    return Extension(name, [pyx], **kw)


os.chdir(HERE)
extensions = [extension(p, "fuse3") for p in sorted(glob.glob("cuse/*.pyx"))]
extensions += [extension(p, "libbsd-overlay", include_dirs=["pfkern"]) for p in sorted(glob.glob("pfkern/*.pyx"))]
# PF_BUILD_ONLY=pfkern.pf_table,pfkern.pf_ioctl_table builds just those (several people building
# different modules of one tree at once must not cythonize each other's half-written files).
only = {m for m in os.environ.get("PF_BUILD_ONLY", "").split(",") if m}
if only:
    extensions = [e for e in extensions if e.name in only]

setup(
    name="pf-linux",
    version="0.1.0",
    description="FreeBSD pf's /dev/pf on Linux, served from userspace",
    packages=["cuse", "pfkern", "pfkern.client"],
    package_data={"cuse": ["*.pxd", "*.pyx"], "pfkern": ["*.pxd", "*.pyx"]},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
    install_requires=["pyroute2"],
    entry_points={"console_scripts": ["pfd = pfkern.pfd:main"]},
    python_requires=">=3.9",
    zip_safe=False,
)
