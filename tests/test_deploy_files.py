"""The container and the Cloud Build pipeline, checked without a Docker engine: the
Dockerfile's own command line is started here with its environment, and cloudbuild.yaml
is read for what a build needs."""

import fnmatch
import json
import re
import shlex
import signal
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from google.cloud import firestore

from tests.support import NOTIFY, NOTIFY_PAYLOAD, ROOT, Server, encode, qstash_headers, start_server

BUILT_IN_SUBSTITUTIONS = {"PROJECT_ID", "COMMIT_SHA", "SHORT_SHA", "BUILD_ID", "LOCATION", "REPO_NAME", "BRANCH_NAME"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENV":
            env.update(pair.partition("=")[::2] for pair in shlex.split(arguments))
    return env


def dockerfile_cmd() -> list[str]:
    (cmd,) = [arguments for instruction, arguments in dockerfile_instructions() if instruction == "CMD"]
    command = json.loads(cmd)
    assert isinstance(command, list), "CMD must be in exec form"
    return [str(part) for part in command]


def declared_python() -> str:
    """The Python the project is written and checked for: `requires-python`'s floor, which
    mypy and ruff target too. The machine running the tests may have a newer one."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = re.fullmatch(r">=\s*(3\.\d+)", project["project"]["requires-python"])
    assert floor, "requires-python names its floor as >=3.N"
    assert project["tool"]["mypy"]["python_version"] == floor.group(1)
    assert project["tool"]["ruff"]["target-version"] == "py" + floor.group(1).replace(".", "")
    return floor.group(1)


def test_the_image_uses_the_python_the_project_declares() -> None:
    (base,) = [arguments for instruction, arguments in dockerfile_instructions() if instruction == "FROM"]
    assert base == f"python:{declared_python()}-slim"


def test_the_image_runs_as_a_non_root_user_with_no_secrets() -> None:
    instructions = dockerfile_instructions()
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert not [name for name in dockerfile_env() if "KEY" in name or "SECRET" in name or "PASSWORD" in name]
    copies = [arguments for instruction, arguments in instructions if instruction == "COPY"]
    assert copies[0] == "requirements.txt ./", "dependencies are installed before the source is copied"


def test_the_image_compiles_every_source_it_copies() -> None:
    """PYTHONDONTWRITEBYTECODE keeps instances from caching bytecode: without it compiled at
    build, every cold start compiles the sources."""
    instructions = dockerfile_instructions()
    copied = [source for name, args in instructions if name == "COPY" for source in args.split()[:-1]]
    sources = [source.rstrip("/") for source in copied if source.endswith((".py", "/"))]
    (compile_step,) = [args for name, args in instructions if name == "RUN" and "compileall" in args]
    assert sources and all(source in compile_step.split() for source in sources), (sources, compile_step)
    assert dockerfile_env().get("PYTHONDONTWRITEBYTECODE") == "1"


@pytest.fixture
def container_like(service_env: dict[str, str], db: firestore.Client, tmp_path: Path) -> Iterator[Server]:
    """The Dockerfile's CMD, started in the repository with the Dockerfile's ENV."""
    command = dockerfile_cmd()
    venv_bin = str(Path(sys.executable).parent)
    env = {**service_env, **dockerfile_env(), "PATH": f"{venv_bin}:/usr/bin:/bin"}
    server = start_server(env, tmp_path / "container.log", command=command)
    yield server
    server.stop(signal.SIGTERM)


@pytest.mark.processes
def test_the_dockerfile_command_serves_a_signed_job(container_like: Server, db: firestore.Client) -> None:
    body = encode(NOTIFY_PAYLOAD)
    headers = qstash_headers(NOTIFY, body, base_url=container_like.url)
    response = requests.post(container_like.url + NOTIFY, data=body, headers=headers, timeout=30)
    assert response.status_code == 200 and response.json()["notified"] == 2
    assert db.collection("jobs").document(headers["Upstash-Message-Id"]).get().get("status") == "succeeded"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for plain patterns: a path is left out when it, or a folder above
    it, matches a pattern (`**` spanning folders)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        regex = fnmatch.translate(pattern).replace(".*.*/", "(?:.*/)?")
        if any(re.match(regex, candidate) for candidate in candidates):
            return True
    return False


def test_dockerignore_keeps_out_the_venv_the_tests_and_git() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [pattern for pattern in patterns if pattern and not pattern.startswith("#")]
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/test_checks.py",
        "tests/apps/probe_main.py",
        "qjobs/__pycache__/x.pyc",
    ):
        assert dockerignored(path, patterns), path
    for path in ("main.py", "handlers/memory_sync.py", "qjobs/pipeline.py", "requirements.txt", "pyproject.toml"):
        assert not dockerignored(path, patterns), path


def cloudbuild() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    return document


def step(step_id: str) -> dict[str, Any]:
    (found,) = [s for s in cloudbuild()["steps"] if s.get("id") == step_id]
    return dict(found)


def substituted(text: str) -> str:
    values = cloudbuild()["substitutions"]
    return re.sub(r"\$\{(_[A-Z0-9_]+)\}", lambda match: str(values[match.group(1)]), text)


def test_every_step_has_an_id_and_the_pipeline_has_what_it_needs() -> None:
    ids = [s.get("id") for s in cloudbuild()["steps"]]
    assert None not in ids and len(ids) == len(set(ids))
    assert ids == [
        "start-firestore-emulator",
        "wait-for-firestore-emulator",
        "lint-and-test",
        "build",
        "push",
        "deploy",
    ]
    assert (ROOT / "Dockerfile").exists() and step("build")["args"][-1] == "."


def test_the_test_step_runs_the_readme_test_command_against_the_emulator() -> None:
    test = step("lint-and-test")
    assert test["name"] == f"python:{declared_python()}"
    assert "make test" in " ".join(test["args"])
    assert "FIRESTORE_EMULATOR_HOST=firestore-emulator:8085" in test["env"]
    readme_first_lines = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make test") for line in readme_first_lines)
    assert "--network=cloudbuild" in step("start-firestore-emulator")["args"]


def test_every_substitution_is_declared() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    used = set(re.findall(r"\$\{?(_[A-Z0-9_]+)", text))
    declared = set(cloudbuild()["substitutions"])
    assert used == declared, "every substitution used is declared, and every one declared is used"
    built_ins = set(re.findall(r"(?<!\$)\$\{?([A-Z][A-Z0-9_]+)", text))
    assert built_ins <= BUILT_IN_SUBSTITUTIONS


def test_the_deploy_matches_the_service_configuration() -> None:
    args = [substituted(str(arg)) for arg in step("deploy")["args"]]
    flags = dict(arg.split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
    env = dict(pair.split("=", 1) for pair in flags["--set-env-vars"].split(","))
    assert int(flags["--timeout"]) <= int(env["JOB_LEASE_SECONDS"]), "a request must not outlive its lease"
    container = dockerfile_env()
    assert int(flags["--concurrency"]) == int(container["WORKERS"]) * int(container["THREADS"])
    assert {"PUBLIC_BASE_URL", "GOOGLE_CLOUD_PROJECT"} <= set(env)
    assert (
        "QSTASH_CURRENT_SIGNING_KEY=" in flags["--set-secrets"] and "QSTASH_NEXT_SIGNING_KEY=" in flags["--set-secrets"]
    )
    assert "--allow-unauthenticated" in args and "--region" in flags and "--service-account" in flags
    assert flags["--image"] in [substituted(image) for image in cloudbuild()["images"]]
    assert substituted(step("push")["args"][1]) == flags["--image"]


def test_the_image_installs_the_operators_command() -> None:
    """`qjobs` is declared once, in pyproject.toml, and the image installs the package (its
    dependencies are installed before, pinned)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"qjobs": "qjobs.cli:main"}
    steps = [args for name, args in dockerfile_instructions() if name == "RUN"]
    assert any("pip install --no-cache-dir --no-deps ." in step for step in steps)
    assert any("pyproject.toml" in args.split() for name, args in dockerfile_instructions() if name == "COPY")


def test_every_ttl_policy_is_declared_and_documented() -> None:
    """The collections whose documents get `expireAt` have a TTL override in
    firestore.indexes.json and a gcloud command in docs/deploy.md, and nothing else does."""
    declared = {
        override["collectionGroup"]
        for override in json.loads((ROOT / "firestore.indexes.json").read_text())["fieldOverrides"]
        if override.get("ttl") and override["fieldPath"] == "expireAt"
    }
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    documented = set(
        re.findall(r"gcloud firestore fields ttls update expireAt --collection-group=(\w+) --enable-ttl", deploy)
    )
    assert declared == documented == {"jobs", "jobTokens", "deadLetters", "notificationEvents", "notifications"}


def test_the_gcloud_path_creates_the_same_composite_indexes_as_the_json() -> None:
    """docs/deploy.md offers gcloud alone as the other way to create the indexes: it must
    create exactly the ones firestore.indexes.json declares."""
    deploy = (ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    created = set()
    for command in re.findall(r"gcloud firestore indexes composite create [^\n]+", deploy):
        (group,) = re.findall(r"--collection-group=(\w+)", command)
        configs = re.findall(r"--field-config=field-path=(\w+),(order|array-config)=(\w+)", command)
        created.add((group, tuple((path, value.upper()) for path, _, value in configs)))
    declared = {
        (
            index["collectionGroup"],
            tuple((field["fieldPath"], field.get("order") or field["arrayConfig"]) for field in index["fields"]),
        )
        for index in json.loads((ROOT / "firestore.indexes.json").read_text())["indexes"]
    }
    assert created == declared
