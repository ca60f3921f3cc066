"""Environment locks: discovery order, every format as its tool writes it, and hostile input."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from regd.ingest.envlock import (
    LOCK_NAMES,
    MAX_LOCK_BYTES,
    EnvLockError,
    ParsedLock,
    find_env_lock,
    parse_env_lock,
)
from regd.ingest.lockformats import normalise_name


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- formats, written the way their tools write them ------------------------------------------------

UV_LOCK = '''
version = 1
revision = 3
requires-python = ">=3.10"
resolution-markers = [
    "python_full_version >= '3.11'",
    "python_full_version < '3.11'",
]

[[package]]
name = "annotated-types"
version = "0.7.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/ee/67/531ea369ba64dcff5ec9c3402f9f51bf748cec26dde048a2f973a4eea7f5/annotated_types-0.7.0.tar.gz", hash = "sha256:aff07c09a53a08bc8cfccb9c85b05f1aa9a2a6f23728d790723543408344ce89", size = 16081, upload-time = "2024-05-20T21:33:25.928Z" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/78/b6/6307fbef88d9b5ee7421e68d78a9f162e0da4900bc5f5793f6d3d0e34fb8/annotated_types-0.7.0-py3-none-any.whl", hash = "sha256:1f02e8b43a8fbbc3f3e0d4f0f4bfc8131bcb4eebe8849b8e5c773f3a1c582a53", size = 13643, upload-time = "2024-05-20T21:33:24.1Z" },
]

[[package]]
name = "anyio"
version = "4.13.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "exceptiongroup", marker = "python_full_version < '3.11'" },
    { name = "idna" },
    { name = "typing-extensions", marker = "python_full_version < '3.13'" },
]
sdist = { url = "https://files.pythonhosted.org/packages/19/14/2c5dd9f512b66549ae92767a9c7b330ae88e1932ca57876909410251fe13/anyio-4.13.0.tar.gz", hash = "sha256:334b70e641fd2221c1505b3890c69882fe4a2df910cba14d97019b90b24439dc", size = 231622, upload-time = "2026-03-24T12:59:09.671Z" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/da/42/e921fccf5015463e32a3cf6ee7f980a6ed0f395ceeaa45060b61d86486c2/anyio-4.13.0-py3-none-any.whl", hash = "sha256:08b310f9e24a9594186fd75b4f73f4a4152069e3853f1ed8bfbf58369f4ad708", size = 114353, upload-time = "2026-03-24T12:59:08.246Z" },
]

[[package]]
name = "numpy"
version = "2.2.6"
source = { registry = "https://pypi.org/simple" }
resolution-markers = [
    "python_full_version < '3.11'",
]
sdist = { url = "https://files.pythonhosted.org/packages/76/21/7d2a95e4bba9dc13d043ee156a356c0a8f0c6309dff6b21b4d71a073b8a8/numpy-2.2.6.tar.gz", hash = "sha256:e29554e2bef54a90aa5cc07da6ce955accb83f21ab5de01a62c8478897b264fd", size = 20276440, upload-time = "2025-05-17T22:38:04.611Z" }

[[package]]
name = "numpy"
version = "2.4.6"
source = { registry = "https://pypi.org/simple" }
resolution-markers = [
    "python_full_version >= '3.11'",
]
sdist = { url = "https://files.pythonhosted.org/packages/00/00/numpy-2.4.6.tar.gz", hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000", size = 20000000, upload-time = "2026-05-01T00:00:00.000Z" }

[[package]]
name = "Typing_Extensions"
version = "4.15.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/72/94/1a15dd82efb362ac84269196e94cf00f187f7ed21c242792a923cdb1c61f/typing_extensions-4.15.0.tar.gz", hash = "sha256:0cea48d173cc12fa28ecabc3b837ea3cf6f38c6d1136f85cbaaf598984861466", size = 109391, upload-time = "2025-08-25T13:49:26.313Z" }

[[package]]
name = "mylib"
version = "0.3.1"
source = { git = "https://oauth2:glpat-secret@gitlab.example.com/ml/mylib?rev=main#8f1c2d3e4b5a69788796a5b4c3d2e1f0a9b8c7d6" }

[[package]]
name = "trainer"
source = { editable = "." }
dependencies = [
    { name = "anyio" },
    { name = "numpy", version = "2.2.6", source = { registry = "https://pypi.org/simple" }, marker = "python_full_version < '3.11'" },
    { name = "numpy", version = "2.4.6", source = { registry = "https://pypi.org/simple" }, marker = "python_full_version >= '3.11'" },
]

[package.dev-dependencies]
dev = [
    { name = "annotated-types" },
]

[package.metadata]
requires-dist = [
    { name = "anyio", specifier = ">=4" },
    { name = "numpy", specifier = ">=2" },
]

[package.metadata.requires-dev]
dev = [{ name = "annotated-types", specifier = ">=0.7" }]
'''


def test_uv_lock(tmp_path: Path) -> None:
    lock = parse_env_lock(write(tmp_path / "uv.lock", UV_LOCK))
    assert lock == ParsedLock(
        kind="uv.lock",
        packages={
            "annotated-types": "0.7.0",
            "anyio": "4.13.0",
            "numpy": "2.2.6 | 2.4.6",  # one pin per Python-version fork, side by side
            "typing-extensions": "4.15.0",
            "mylib": "0.3.1",
            "trainer": "editable",  # a dynamic-version workspace member is locked by source only
        },
    )


POETRY_LOCK = '''
# This file is automatically @generated by Poetry 2.1.3 and should not be changed by hand.

[[package]]
name = "certifi"
version = "2025.4.26"
description = "Python package for providing Mozilla's CA Bundle."
optional = false
python-versions = ">=3.6"
groups = ["main"]
files = [
    {file = "certifi-2025.4.26-py3-none-any.whl", hash = "sha256:30350364dfe371162649852c63336a15c70c6510c2ad5015b21c2345311805f3"},
    {file = "certifi-2025.4.26.tar.gz", hash = "sha256:0a816057ea3cdefcef70270d2c515e4506bbc954f417fa5ade2021213bb8f0c6"},
]

[[package]]
name = "torch"
version = "2.5.1+cu121"
description = "Tensors and Dynamic neural networks in Python with strong GPU acceleration"
optional = false
python-versions = ">=3.8.0"
groups = ["main"]
files = [
    {file = "torch-2.5.1+cu121-cp311-cp311-linux_x86_64.whl", hash = "sha256:c8ab8c92eab928a93c483f83ca8c63f13dafc10fc93ad90ed2dcb7c82ea50410"},
]

[package.dependencies]
filelock = "*"
jinja2 = "*"

[package.extras]
opt-einsum = ["opt-einsum (>=3.3)"]

[package.source]
type = "legacy"
url = "https://download.pytorch.org/whl/cu121"
reference = "pytorch"

[[package]]
name = "ruamel.yaml"
version = "0.18.6"
description = "ruamel.yaml is a YAML parser/emitter"
optional = false
python-versions = ">=3.7"
groups = ["dev"]
markers = "python_version < \\"3.13\\""
files = []

[metadata]
lock-version = "2.1"
python-versions = "^3.11"
content-hash = "a4f2c6f9e1b0d8c3b7a5e2f1c0d9b8a7e6f5d4c3b2a1f0e9d8c7b6a5f4e3d2c1"
'''


def test_poetry_lock(tmp_path: Path) -> None:
    lock = parse_env_lock(write(tmp_path / "poetry.lock", POETRY_LOCK))
    assert lock.kind == "poetry.lock"
    assert lock.packages == {"certifi": "2025.4.26", "torch": "2.5.1+cu121", "ruamel-yaml": "0.18.6"}


PIXI_LOCK_V6 = """
version: 6
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    indexes:
    - https://pypi.org/simple
    options:
      pypi-prerelease-mode: if-necessary-or-explicit
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/_openmp_mutex-4.5-20_gnu.conda
      - conda: https://conda.anaconda.org/conda-forge/linux-64/numpy-2.4.3-py313hf6604e3_0.conda
      - conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.13.12-hc97d973_100_cp313.conda
      - conda: https://conda.anaconda.org/conda-forge/noarch/tzdata-2025c-hc9c84f9_1.conda
      - pypi: https://files.pythonhosted.org/packages/31/05/e58d7b4bd213f8c1f6047001ea6b1910354570cfca6c1659bd5a372a1f60/cyclonedds_idl-0.1.0-py3-none-any.whl
      - pypi: ./
      osx-arm64:
      - conda: https://conda.anaconda.org/conda-forge/osx-arm64/numpy-2.4.3-py313h9771d21_0.conda
      - conda: https://conda.anaconda.org/conda-forge/osx-arm64/python-3.13.12-h20e6be0_100_cp313.conda
      - conda: https://conda.anaconda.org/conda-forge/noarch/tzdata-2025c-hc9c84f9_1.conda
      - pypi: https://files.pythonhosted.org/packages/31/05/e58d7b4bd213f8c1f6047001ea6b1910354570cfca6c1659bd5a372a1f60/cyclonedds_idl-0.1.0-py3-none-any.whl
      - pypi: ./
packages:
- conda: https://conda.anaconda.org/conda-forge/linux-64/_openmp_mutex-4.5-20_gnu.conda
  build_number: 20
  sha256: 1dd3fffd892081df9726d7eb7e0dea6198962ba775bd88842135a4ddb4deb3c9
  md5: a9f577daf3de00bca7c3c76c0ecbd1de
  depends:
  - __glibc >=2.17,<3.0.a0
  - libgomp >=7.5.0
  constrains:
  - openmp_impl <0.0a0
  license: BSD-3-Clause
  license_family: BSD
  purls: []
  size: 28948
  timestamp: 1770939786096
- pypi: https://files.pythonhosted.org/packages/31/05/e58d7b4bd213f8c1f6047001ea6b1910354570cfca6c1659bd5a372a1f60/cyclonedds_idl-0.1.0-py3-none-any.whl
  name: cyclonedds-idl
  version: 0.1.0
  sha256: f0d6047e1d9abc57971e98a8cad89fd171378eada21dced091fa9e8f4052a000
  requires_python: '>=3.10,<3.14'
- pypi: ./
  name: cydr
  version: 0.1.0
  sha256: 9703fb1c699c07e821efbc81c7a82b097e84d3d6fd27eedfc75220f7d8deb9d1
  requires_dist:
  - numpy>=2.0,<3
  requires_python: '>=3.10'
- conda: https://conda.anaconda.org/conda-forge/linux-64/numpy-2.4.3-py313hf6604e3_0.conda
  sha256: 5e0b1d179e1e74b227230d2de504df9f3183b25fa547e85718b522b77f188487
  md5: 4a08e7dd57fdc0a13dc699c4c6d76c3a
  depends:
  - __glibc >=2.17,<3.0.a0
  - libblas >=3.9.0,<4.0a0
  - python >=3.13,<3.14.0a0
  - python_abi 3.13.* *_cp313
  license: BSD-3-Clause
  purls:
  - pkg:pypi/numpy?source=hash-mapping
  size: 8880000
  timestamp: 1767577328564
- conda: https://conda.anaconda.org/conda-forge/osx-arm64/numpy-2.4.3-py313h9771d21_0.conda
  sha256: 4e0b1d179e1e74b227230d2de504df9f3183b25fa547e85718b522b77f188487
  md5: 3a08e7dd57fdc0a13dc699c4c6d76c3a
  license: BSD-3-Clause
  size: 6660000
  timestamp: 1767577328564
- conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.13.12-hc97d973_100_cp313.conda
  build_number: 100
  sha256: 3d584956604909ff5df353767f3a2a2f60e07d070b328d109f30ac40cd62df6c
  md5: 18335a698559cdbcd86150a48bf54ba6
  license: Python-2.0
  size: 33000000
  timestamp: 1774197446916
  python_site_packages_path: lib/python3.13/site-packages
- conda: https://conda.anaconda.org/conda-forge/osx-arm64/python-3.13.12-h20e6be0_100_cp313.conda
  build_number: 100
  sha256: 2d584956604909ff5df353767f3a2a2f60e07d070b328d109f30ac40cd62df6c
  md5: 08335a698559cdbcd86150a48bf54ba6
  license: Python-2.0
  size: 12000000
  timestamp: 1774197446916
- conda: https://conda.anaconda.org/conda-forge/noarch/tzdata-2025c-hc9c84f9_1.conda
  sha256: 1b5ad78b8bb61b6cdc0978a6a99f8dfb2cc789a451378d054698441005ecbdb6
  md5: 19e5fbc24009179e8b0409624691758a
  license: LicenseRef-Public-Domain
  size: 119135
  timestamp: 1765214722852
"""


def test_pixi_lock_v6(tmp_path: Path) -> None:
    lock = parse_env_lock(write(tmp_path / "pixi.lock", PIXI_LOCK_V6))
    assert lock.kind == "pixi.lock"
    assert lock.packages == {
        "-openmp-mutex": "4.5",  # `_openmp_mutex`, named by its file name; PEP 503 keeps the leading run
        "cyclonedds-idl": "0.1.0",
        "cydr": "0.1.0",
        "numpy": "2.4.3",  # two platforms, one version
        "python": "3.13.12",
        "tzdata": "2025c",
    }


PIXI_LOCK_V4 = """
version: 4
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.5-h2ad013b_0_cpython.conda
      - pypi: https://files.pythonhosted.org/packages/aa/bb/requests-2.32.3-py3-none-any.whl
packages:
- kind: conda
  name: python
  version: 3.12.5
  build: h2ad013b_0_cpython
  subdir: linux-64
  url: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.5-h2ad013b_0_cpython.conda
  sha256: fe51de6107f9edc7aa4f786a70f4a883943bc9d39b3bb7307c04c41410990726
- kind: pypi
  name: requests
  version: 2.32.3
  url: https://files.pythonhosted.org/packages/aa/bb/requests-2.32.3-py3-none-any.whl
  sha256: 70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6
  requires_dist:
  - charset-normalizer<4,>=2
"""


def test_pixi_lock_v4(tmp_path: Path) -> None:
    lock = parse_env_lock(write(tmp_path / "pixi.lock", PIXI_LOCK_V4))
    assert lock.packages == {"python": "3.12.5", "requests": "2.32.3"}


PIPFILE_LOCK = """
{
    "_meta": {
        "hash": {
            "sha256": "8b1e5f3c2f0a6d4e9c7b5a3f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d"
        },
        "pipfile-spec": 6,
        "requires": {
            "python_version": "3.11"
        },
        "sources": [
            {
                "name": "pypi",
                "url": "https://pypi.org/simple",
                "verify_ssl": true
            }
        ]
    },
    "default": {
        "numpy": {
            "hashes": [
                "sha256:aaa",
                "sha256:bbb"
            ],
            "index": "pypi",
            "markers": "python_version >= '3.9'",
            "version": "==1.26.4"
        },
        "scikit-learn": {
            "hashes": [
                "sha256:ccc"
            ],
            "index": "pypi",
            "version": "==1.5.2"
        },
        "mylib": {
            "editable": true,
            "path": "."
        },
        "internal-tools": {
            "git": "https://deploy:token@git.example.com/ml/internal-tools.git",
            "ref": "4f3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c"
        }
    },
    "develop": {
        "pytest": {
            "hashes": [
                "sha256:ddd"
            ],
            "markers": "python_version >= '3.8'",
            "version": "==8.3.3"
        }
    }
}
"""


def test_pipfile_lock(tmp_path: Path) -> None:
    lock = parse_env_lock(write(tmp_path / "Pipfile.lock", PIPFILE_LOCK))
    assert lock.kind == "Pipfile.lock"
    assert lock.packages == {
        "numpy": "1.26.4",
        "scikit-learn": "1.5.2",
        "mylib": "editable",
        "internal-tools": "https://git.example.com/ml/internal-tools.git@4f3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c",
        "pytest": "8.3.3",
    }


CONDA_LOCK = """
# This lock file was generated by conda-lock (https://github.com/conda/conda-lock). DO NOT EDIT!
#
# A "lock file" contains a concrete list of package versions (with checksums) to be installed.
version: 1
metadata:
  content_hash:
    linux-64: 0aaecb7c6cc4a6e01977da5e159d11fb066074105041b4f817ca04aa05bf1d46
    osx-arm64: 1aaecb7c6cc4a6e01977da5e159d11fb066074105041b4f817ca04aa05bf1d46
  channels:
  - url: conda-forge
    used_env_vars: []
  platforms:
  - linux-64
  - osx-arm64
  sources:
  - environment.yml
package:
- name: _libgcc_mutex
  version: '0.1'
  manager: conda
  platform: linux-64
  dependencies: {}
  url: https://conda.anaconda.org/conda-forge/linux-64/_libgcc_mutex-0.1-conda_forge.tar.bz2
  hash:
    md5: d7c89558ba9fa0495403155b64376d81
    sha256: fe51de6107f9edc7aa4f786a70f4a883943bc9d39b3bb7307c04c41410990726
  category: main
  optional: false
- name: python
  version: 3.11.9
  manager: conda
  platform: linux-64
  dependencies:
    bzip2: '>=1.0.8,<2.0a0'
  url: https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-hb806964_0_cpython.conda
  hash:
    md5: ac68acfa8b558ed406c75e98d3428d7b
    sha256: 177f33a1fb8d3476b38f73c37b42f01c0b014fa0e039a701fd9f83d83aae6d40
  category: main
  optional: false
- name: python
  version: 3.11.9
  manager: conda
  platform: osx-arm64
  dependencies: {}
  url: https://conda.anaconda.org/conda-forge/osx-arm64/python-3.11.9-h932a869_0_cpython.conda
  hash:
    md5: 293e0713ae804b5527a673e7605c04fc
    sha256: a436ceabde1f056a0ac3e347dadc780ee2a135a421ddb6e9a469370769829e3c
  category: main
  optional: false
- name: icu
  version: '75.1'
  manager: conda
  platform: linux-64
  dependencies: {}
  url: https://conda.anaconda.org/conda-forge/linux-64/icu-75.1-he02047a_0.conda
  hash:
    md5: 8b189310083baabfb622af68fd9d3ae3
    sha256: 71e750d509f5fa3421087ba88ef9a7b9be11c53174af3aa4d06aff4c18b38e8e
  category: main
  optional: false
- name: torchmetrics
  version: 1.4.2
  manager: pip
  platform: linux-64
  dependencies:
    numpy: '>1.20.0'
  url: https://files.pythonhosted.org/packages/aa/bb/torchmetrics-1.4.2-py3-none-any.whl
  hash:
    sha256: 87b9eca51ff6f93985a0f9db8d3ea8a1b3e1ad8b2e5a1f9b5b6c7d8e9f0a1b2c
  category: main
  optional: false
"""


def test_conda_lock(tmp_path: Path) -> None:
    lock = parse_env_lock(write(tmp_path / "conda-lock.yml", CONDA_LOCK))
    assert lock.kind == "conda-lock.yml"
    assert lock.packages == {"-libgcc-mutex": "0.1", "python": "3.11.9", "icu": "75.1", "torchmetrics": "1.4.2"}


ENVIRONMENT_YML = """
name: fraud-train
channels:
  - pytorch
  - nvidia
  - conda-forge
dependencies:
  - python>=3.10
  - numpy=1.26
  - scipy==1.13.1
  - pytorch::pytorch=2.3.1=py3.11_cuda12.1_cudnn8.9.2_0
  - pandas 2.2.*
  - cudatoolkit
  - pip
  - pip:
    - transformers==4.44.2
    - accelerate>=0.33,<1  # comment
    - -r requirements-extra.txt
    - --extra-index-url https://download.pytorch.org/whl/cu121
"""


def test_environment_yml(tmp_path: Path) -> None:
    write(tmp_path / "requirements-extra.txt", "wandb==0.17.9\n")
    lock = parse_env_lock(write(tmp_path / "environment.yml", ENVIRONMENT_YML))
    assert lock.kind == "environment.yml"
    assert lock.packages == {
        "python": ">=3.10",
        "numpy": "1.26",
        "scipy": "1.13.1",
        "pytorch": "2.3.1",
        "pandas": "2.2.*",
        "cudatoolkit": "",
        "pip": "",
        "transformers": "4.44.2",
        "accelerate": ">=0.33,<1",
        "wandb": "0.17.9",
    }


PIP_COMPILE = """
#
# This file is autogenerated by pip-compile with Python 3.11
# by the following command:
#
#    pip-compile --generate-hashes requirements.in
#
--index-url https://alice:hunter2@pypi.internal.example/simple
--extra-index-url https://download.pytorch.org/whl/cu121

certifi==2024.8.30 \\
    --hash=sha256:922820b53db7a7257ffbda3f597266d435245903d80737e34f8a45ff3e3230d8 \\
    --hash=sha256:bec941d2aa8195e248a60b31ff9f0558284cf01a52591ceda73ea9afffd69fd9
    # via requests
Charset_Normalizer==3.3.2 \\
    --hash=sha256:06435b539f889b1f6f4ac1758871aae42dc3a8c0e24ac9e60c2384973ad73027
requests[socks]==2.32.3 ; python_version >= "3.8" \\
    --hash=sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6
torch==2.4.1+cu121
numpy>=1.24,<2.0  # not pinned: recorded as written
tqdm
"""


def test_requirements_pip_compile(tmp_path: Path) -> None:
    lock = parse_env_lock(write(tmp_path / "requirements.txt", PIP_COMPILE))
    assert lock.kind == "requirements.txt"
    assert lock.packages == {
        "certifi": "2024.8.30",
        "charset-normalizer": "3.3.2",
        "requests": "2.32.3",
        "torch": "2.4.1+cu121",
        "numpy": ">=1.24,<2.0",
        "tqdm": "",
    }


def test_requirements_urls_editables_and_includes(tmp_path: Path) -> None:
    write(tmp_path / "base" / "common.txt", "numpy>=1.20\nscipy==1.13.1\n")
    write(
        tmp_path / "requirements-prod.txt",
        """
        -r base/common.txt
        --requirement=base/common.txt
        -c constraints.txt
        numpy==1.26.4
        torch @ https://user:tok@download.pytorch.org/whl/cu121/torch-2.4.1%2Bcu121-cp311-cp311-linux_x86_64.whl
        https://example.com/packages/my_pkg-0.4.0-py3-none-any.whl
        ./vendor/helpers-1.2.0.tar.gz
        -e git+https://ghp_secrettoken@github.com/acme/featurelib.git@v2.1#egg=feature_lib
        -e ./libs/data-tools[dev]
        git+ssh://git@github.com/acme/private-models.git@main
        """,
    )
    lock = parse_env_lock(tmp_path / "requirements-prod.txt")
    assert lock.kind == "requirements.txt"
    assert lock.packages == {
        "numpy": "1.26.4",  # the pin beats base.txt's range
        "scipy": "1.13.1",
        "torch": "https://download.pytorch.org/whl/cu121/torch-2.4.1%2Bcu121-cp311-cp311-linux_x86_64.whl",
        "my-pkg": "https://example.com/packages/my_pkg-0.4.0-py3-none-any.whl",
        "helpers": "./vendor/helpers-1.2.0.tar.gz",
        "feature-lib": "git+https://github.com/acme/featurelib.git@v2.1#egg=feature_lib",
        "data-tools": "editable",
        "private-models": "git+ssh://git@github.com/acme/private-models.git@main",
    }
    assert "secret" not in repr(lock) and "tok@" not in repr(lock)


def test_name_normalisation_is_pep_503() -> None:
    assert normalise_name("Foo.Bar__baz--Qux") == "foo-bar-baz-qux"
    assert normalise_name("ruamel.yaml") == "ruamel-yaml"


# --- discovery ---------------------------------------------------------------------------------------


def test_lock_names_order() -> None:
    assert LOCK_NAMES == (
        "uv.lock",
        "poetry.lock",
        "pixi.lock",
        "Pipfile.lock",
        "conda-lock.yml",
        "environment.yml",
        "requirements*.txt",
    )


def test_discovery_prefers_the_listed_order_within_a_directory(tmp_path: Path) -> None:
    for name in ("requirements-dev.txt", "requirements.txt", "environment.yml", "poetry.lock", "uv.lock"):
        (tmp_path / name).write_text("")
    expected = ["uv.lock", "poetry.lock", "environment.yml", "requirements.txt", "requirements-dev.txt"]
    for name in expected:
        assert find_env_lock(tmp_path, tmp_path) == tmp_path / name
        (tmp_path / name).unlink()
    assert find_env_lock(tmp_path, tmp_path) is None


def test_discovery_takes_the_nearest_and_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    deep = root / "fraud" / "run-12" / "checkpoints"
    deep.mkdir(parents=True)
    (tmp_path / "uv.lock").write_text("")  # above the watch root: not ours
    assert find_env_lock(deep, root) is None
    (root / "requirements.txt").write_text("")
    assert find_env_lock(deep, root) == root / "requirements.txt"
    (root / "fraud" / "run-12" / "pixi.lock").write_text("")
    assert find_env_lock(deep, root) == root / "fraud" / "run-12" / "pixi.lock"


def test_discovery_skips_directories_and_sockets_named_like_locks(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").mkdir()
    (tmp_path / "requirements.txt").write_text("numpy\n")
    assert find_env_lock(tmp_path, tmp_path) == tmp_path / "requirements.txt"


def test_discovery_without_root_stops_at_the_repository_top(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text("")
    repo = tmp_path / "project"
    (repo / ".git").mkdir(parents=True)
    start = repo / "outputs" / "run-1"
    start.mkdir(parents=True)
    assert find_env_lock(start, None) is None
    (repo / "poetry.lock").write_text("")
    assert find_env_lock(start, None) == repo / "poetry.lock"


def test_discovery_outside_the_root_looks_only_at_the_start(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    (tmp_path / "elsewhere" / "uv.lock").write_text("")
    assert find_env_lock(elsewhere, tmp_path / "root") is None
    (elsewhere / "uv.lock").write_text("")
    assert find_env_lock(elsewhere, tmp_path / "root") == elsewhere / "uv.lock"


def test_discovery_through_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "data" / "runs"
    (real / "a").mkdir(parents=True)
    (real / "uv.lock").write_text("")
    link = tmp_path / "runs"
    link.symlink_to(real)
    assert find_env_lock(real / "a", link) is not None
    assert find_env_lock(link / "a", link) == link / "uv.lock"


# --- kind by content, for a lock a sidecar names -----------------------------------------------------


def test_oddly_named_locks_are_recognised_by_content(tmp_path: Path) -> None:
    assert parse_env_lock(write(tmp_path / "env" / "prod.lock", POETRY_LOCK)).kind == "poetry.lock"
    assert parse_env_lock(write(tmp_path / "env" / "train.lock", UV_LOCK)).kind == "uv.lock"
    assert parse_env_lock(write(tmp_path / "env" / "gpu.yaml", CONDA_LOCK)).kind == "conda-lock.yml"
    assert parse_env_lock(write(tmp_path / "env" / "pixi-gpu.yml", PIXI_LOCK_V4)).kind == "pixi.lock"
    assert parse_env_lock(write(tmp_path / "env" / "deps.in", "numpy==1.0\n")).packages == {"numpy": "1.0"}
    with pytest.raises(EnvLockError, match="not a lock format"):
        parse_env_lock(write(tmp_path / "env" / "notes.md", "# hi\n"))


def test_data_argument_is_parsed_instead_of_the_file(tmp_path: Path) -> None:
    lock = parse_env_lock(tmp_path / "requirements.txt", b"numpy==2.0.0\n")
    assert lock.packages == {"numpy": "2.0.0"}


# --- malformed and hostile input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("uv.lock", 'version = 1\n[[package]]\nname = "a"\nversion = \n', r"uv.lock: invalid TOML.*line 4"),
        ("uv.lock", 'version = 1\n[[package]]\nversion = "1.0"\n', r"uv.lock: package #1 has no name"),
        ("uv.lock", 'package = "numpy"\nversion = 1\n', r"'package' should be a list"),
        ("poetry.lock", '[[package]]\nname = "a"\n[metadata]\nlock-version = "2.1"\n', r"package #1 \(a\) has no version"),
        ("Pipfile.lock", '{"default": {"a": {"version": "==1"}},\n "develop": }', r"invalid JSON at line 2, column 13"),
        ("Pipfile.lock", '["numpy"]', r"expected a JSON object"),
        ("Pipfile.lock", '{"default": {"numpy": "==1.0"}}', r"default.numpy should be an object"),
        ("pixi.lock", "version: 6\npackages:\n- conda: https://x/y/notaconda.txt\n", r"package #1 has no name and version"),
        ("pixi.lock", "version: 6\npackages: [\n", r"invalid YAML at line"),
        ("conda-lock.yml", "version: 1\npackage:\n- name: numpy\n", r"package #1 \(numpy\) has no version"),
        ("conda-lock.yml", "- just\n- a list\n", r"expected a mapping at the top"),
        ("environment.yml", "dependencies:\n  - =1.0\n", r"dependency #1: not a conda package spec"),
        ("environment.yml", "dependencies:\n  - {conda: numpy}\n", r"dependency #1 should be a conda spec"),
        ("requirements.txt", "numpy==1.0\n\nnumpy 1.26\n", r"requirements.txt line 3: cannot read the version specifier of numpy"),
        ("requirements.txt", "ok==1\n!!!\n", r"requirements.txt line 2: not a requirement"),
        ("requirements.txt", "-r\n", r"line 1: -r needs a file name"),
        ("requirements.txt", "-e 'unterminated\n", r"line 1: No closing quotation"),
        ("requirements.txt", b"numpy==1.0\n\xff\xfe\n", r"not UTF-8 text"),
    ],
)
def test_malformed_locks_say_what_is_wrong(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(EnvLockError, match=message):
        parse_env_lock(path)


def test_yaml_python_tags_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(
        tmp_path / "pixi.lock",
        f"""
        version: 6
        packages:
        - conda: !!python/object/apply:os.system ["touch {marker}"]
        """,
    )
    with pytest.raises(EnvLockError, match=r"invalid YAML.*constructor.*python/object/apply"):
        parse_env_lock(path)
    assert not marker.exists()


@pytest.mark.timeout(20)  # a deadline, not a speed figure: reading 16 MiB+ would not hang, a FIFO would
def test_a_file_over_the_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    with path.open("wb") as handle:
        handle.truncate(MAX_LOCK_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(EnvLockError, match=r"cannot read requirements.txt: larger than 16 MiB"):
        parse_env_lock(path)
    with pytest.raises(EnvLockError, match="larger than 16 MiB"):
        parse_env_lock(tmp_path / "uv.lock", b" " * (MAX_LOCK_BYTES + 1))


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    depth = 5_000
    with pytest.raises(EnvLockError, match="nested too deeply|invalid"):
        parse_env_lock(tmp_path / "uv.lock", b"x = " + b"[" * depth + b"]" * depth + b"\n")
    with pytest.raises(EnvLockError, match="nested too deeply|invalid"):
        parse_env_lock(tmp_path / "Pipfile.lock", b"[" * depth + b"]" * depth)
    with pytest.raises(EnvLockError, match=r"\[ \] or \{ \} nested more than 8 deep"):
        parse_env_lock(tmp_path / "conda-lock.yml", b"package: " + b"[" * depth + b"]" * depth)


@pytest.mark.timeout(20)  # uncapped, PyYAML would scan this for minutes
def test_yaml_flow_nesting_is_capped_before_parsing(tmp_path: Path) -> None:
    # PyYAML spends time proportional to the flow depth on every token: 1 MiB of 15-deep lists takes
    # 20 s of pure-Python scanning. The cap refuses such a file before the parser sees it.
    unit = "[" * 9 + "]" * 9
    data = ("package: [" + ", ".join([unit] * 30_000) + "]").encode()
    with pytest.raises(EnvLockError, match="nested more than 8 deep"):
        parse_env_lock(tmp_path / "pixi.lock", data)


def test_a_fifo_named_like_a_lock_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "requirements.txt"
    os.mkfifo(fifo)
    with pytest.raises(EnvLockError, match="not a regular file"):
        parse_env_lock(fifo)


def test_include_cycles_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "numpy==1.0\n-r dev.txt\n")
    write(tmp_path / "dev.txt", "pytest==8.0\n-r ./requirements.txt\n")
    with pytest.raises(EnvLockError, match=r"include cycle: requirements.txt -> dev.txt -> requirements.txt"):
        parse_env_lock(tmp_path / "requirements.txt")


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "-r requirements.txt\n")
    with pytest.raises(EnvLockError, match="include cycle"):
        parse_env_lock(tmp_path / "requirements.txt")


def test_includes_are_bounded_in_depth(tmp_path: Path) -> None:
    for level in range(7):
        write(tmp_path / f"r{level}.txt", f"pkg{level}==1.{level}\n-r r{level + 1}.txt\n")
    write(tmp_path / "r7.txt", "last==1\n")
    with pytest.raises(EnvLockError, match="nested more than 5 deep"):
        parse_env_lock(tmp_path / "r0.txt")
    write(tmp_path / "r5.txt", "pkg5==1.5\n")  # five levels below r0: allowed
    assert parse_env_lock(tmp_path / "r0.txt").packages == {f"pkg{n}": f"1.{n}" for n in range(6)}


def test_diamond_includes_are_read_once(tmp_path: Path) -> None:
    write(tmp_path / "base.txt", "numpy==1.0\n")
    write(tmp_path / "a.txt", "-r base.txt\n")
    write(tmp_path / "b.txt", "-r base.txt\n")
    write(tmp_path / "requirements.txt", "-r a.txt\n-r b.txt\n-r a.txt\n")
    assert parse_env_lock(tmp_path / "requirements.txt").packages == {"numpy": "1.0"}


def test_missing_include_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "numpy==1.0\n-r missing.txt\n")
    with pytest.raises(EnvLockError, match=r"requirements.txt line 2: cannot read included missing.txt"):
        parse_env_lock(tmp_path / "requirements.txt")


def test_remote_includes_are_never_fetched(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "-r https://example.invalid/reqs.txt\nnumpy==1.0\n")
    assert parse_env_lock(tmp_path / "requirements.txt").packages == {"numpy": "1.0"}


def test_includes_share_the_size_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as handle:
        handle.truncate(MAX_LOCK_BYTES - 10)
    write(tmp_path / "requirements.txt", "-r big.txt\n")
    with pytest.raises(EnvLockError, match="more than the lock limit"):
        parse_env_lock(tmp_path / "requirements.txt")


def test_environment_variables_are_not_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGD_TEST_TOKEN", "s3cret")
    write(tmp_path / "requirements.txt", "private @ https://${REGD_TEST_TOKEN}@pkgs.example.com/private-1.0.tar.gz\n")
    lock = parse_env_lock(tmp_path / "requirements.txt")
    assert "s3cret" not in repr(lock)
    assert lock.packages == {"private": "https://pkgs.example.com/private-1.0.tar.gz"}


# --- whatever the bytes, a lock parses or raises EnvLockError ------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_LINE_PARTS = st.sampled_from(
    ["numpy", "==1.2", ">=1", ",", "<2", " ", ";", "python_version<'3'", "[x]", "@", "https://h/p.whl", "-e", "-r",
     "--hash=sha256:aa", "\\", "#", "\n", "./", "git+https://u:p@h/r.git#egg=r", "(", ")", "~=", "*", "'", "\t"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_LINE_PARTS, max_size=30).map("".join))
def test_requirements_never_crash(tmp_path: Path, text: str) -> None:
    try:
        lock = parse_env_lock(tmp_path / "requirements.txt", text.encode())
    except EnvLockError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in lock.packages.items())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["uv.lock", "poetry.lock", "pixi.lock", "Pipfile.lock", "conda-lock.yml", "environment.yml"]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(
            ["package", "packages", "name", "version", "default", "develop", "dependencies", "pip", "conda", "pypi",
             "source", "editable", "metadata", "environments"]), children, max_size=4),
        max_leaves=20,
    ),
)
def test_structured_locks_never_crash(tmp_path: Path, name: str, doc: object) -> None:
    import json

    import yaml

    if name.endswith(".lock") and name != "pixi.lock" and name != "Pipfile.lock":
        return  # TOML cannot express every JSON shape; the TOML parsers are covered above
    data = json.dumps(doc).encode() if name == "Pipfile.lock" else yaml.safe_dump(doc).encode()
    try:
        parse_env_lock(tmp_path / name, data)
    except EnvLockError:
        pass


@pytest.mark.parametrize(
    "line",
    [
        "a" + " " * 200_000 + "b",  # pip's comment regex is quadratic on runs of blanks
        "x @ " + "u" + " " * 200_000 + "v",  # so is `\s+;` when looking for a URL's marker
        "-e " + "[" * 200_000 + "x]",
        "numpy" + "-" * 200_000 + "!",
        "-e " + "x" * 300_000,
    ],
    ids=["blanks-before-comment", "blanks-before-marker", "brackets", "dashes", "over-long-line"],
)
@pytest.mark.timeout(20)  # quadratic on these 200k-character lines would take hours, not milliseconds
def test_hostile_lines_take_linear_time(tmp_path: Path, line: str) -> None:
    try:
        parse_env_lock(tmp_path / "requirements.txt", line.encode())
    except EnvLockError:
        pass
