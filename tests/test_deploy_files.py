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

from tests.support import NOTIFY, NOTIFY_PAYLOAD, ROOT, Server, encode, qstash_headers, start_server, wait_until

BUILT_IN_SUBSTITUTIONS = {
    "PROJECT_ID", "PROJECT_NUMBER", "COMMIT_SHA", "SHORT_SHA", "BUILD_ID", "LOCATION", "REPO_NAME", "BRANCH_NAME"
}  # fmt: skip
DEPLOY_FLAGS_THAT_DROP_SETTINGS = (
    "--set-env-vars",
    "--set-secrets",
    "--env-vars-file",
    "--clear-env-vars",
    "--clear-secrets",
)
"""`gcloud run deploy --help`: each removes every existing value first."""


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
    """The Dockerfile's CMD, started in the repository with the Dockerfile's ENV, as the
    image's user, who has no home (`useradd --no-create-home`): HOME names a directory
    that cannot be made, even by root."""
    command = dockerfile_cmd()
    venv_bin = str(Path(sys.executable).parent)
    env = {**service_env, "HOME": "/proc/no-home-for-the-image-user", **dockerfile_env()}
    env["PATH"] = f"{venv_bin}:/usr/bin:/bin"
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


@pytest.mark.processes
def test_the_dockerfile_command_starts_and_stops_without_an_error_line(container_like: Server) -> None:
    """Every instance start is logged; an ERROR there (gunicorn failing to make its control
    socket under a home the user does not have) would page someone for nothing. gunicorn
    starts that socket in a thread after the workers: wait until it exists or failed."""
    socket = Path(dockerfile_env().get("XDG_RUNTIME_DIR", "/nonexistent")) / "gunicorn.ctl"
    wait_until(lambda: socket.exists() or "Control server" in container_like.logs(), "the control socket's start")
    container_like.stop(signal.SIGTERM)
    assert not socket.exists(), "removed at shutdown"
    errors = [line for line in container_like.logs().splitlines() if "[ERROR]" in line or '"ERROR"' in line]
    assert errors == []


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
        "mutants/qjobs/signature.py",
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
    assert ids == ["lint-and-test", "build", "push", "deploy"]
    assert (ROOT / "Dockerfile").exists() and step("build")["args"][-1] == "."


def test_the_test_step_runs_the_readme_test_command_with_what_the_readme_asks_for() -> None:
    """`make test` starts its own emulator, as on any machine: the step installs what the
    README's first lines ask for besides Python (Node.js with npm, Java 21+, the emulator)."""
    test = step("lint-and-test")
    assert test["name"] == f"python:{declared_python()}-trixie", "Debian 13: Java 21 is packaged"
    script = " ".join(test["args"])
    assert script.rstrip().endswith("make test") and "set -euo pipefail" in script
    for package in ("nodejs", "npm", "openjdk-21-jre-headless", "google-cloud-cli-firestore-emulator"):
        assert f" {package}" in script, package
    readme_first_lines = (ROOT / "README.md").read_text().splitlines()[:12]
    assert any(line.startswith("make test") for line in readme_first_lines)
    assert "Java 21+" in " ".join(readme_first_lines) and "Node.js 18+" in " ".join(readme_first_lines)


def test_every_substitution_is_declared() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    used = set(re.findall(r"\$\{?(_[A-Z0-9_]+)", text))
    declared = set(cloudbuild()["substitutions"])
    assert used == declared, "every substitution used is declared, and every one declared is used"
    built_ins = set(re.findall(r"(?<!\$)\$\{?([A-Z][A-Z0-9_]+)", text))
    assert built_ins <= BUILT_IN_SUBSTITUTIONS


def deploy_flags() -> dict[str, str]:
    args = [substituted(str(arg)) for arg in step("deploy")["args"]]
    return dict(arg.split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)


def pairs(value: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in value.split(","))


def test_the_deploy_matches_the_service_configuration() -> None:
    args = [substituted(str(arg)) for arg in step("deploy")["args"]]
    flags = deploy_flags()
    env = pairs(flags["--update-env-vars"])
    assert int(flags["--timeout"]) <= int(env["JOB_LEASE_SECONDS"]), "a request must not outlive its lease"
    assert {"PUBLIC_BASE_URL", "GOOGLE_CLOUD_PROJECT"} <= set(env)
    assert {"QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"} <= set(pairs(flags["--update-secrets"]))
    assert "--allow-unauthenticated" in args and "--region" in flags and "--service-account" in flags
    assert flags["--image"] in [substituted(image) for image in cloudbuild()["images"]]
    assert substituted(step("push")["args"][1]) == flags["--image"]


def test_one_number_governs_the_concurrency_of_cloud_run_and_of_the_instance() -> None:
    """Cloud Run's --concurrency and the server's WORKERS x THREADS come from one
    substitution; the image's defaults agree with its default."""
    raw = {str(arg).split("=", 1)[0]: str(arg).split("=", 1)[-1] for arg in step("deploy")["args"]}
    assert raw["--concurrency"] == "${_CONCURRENCY}"
    env = pairs(raw["--update-env-vars"])
    assert (env["WORKERS"], env["THREADS"]) == ("1", "${_CONCURRENCY}")
    container = dockerfile_env()
    assert int(container["WORKERS"]) * int(container["THREADS"]) == int(cloudbuild()["substitutions"]["_CONCURRENCY"])


def test_a_deploy_keeps_the_settings_the_doc_tells_operators_to_add() -> None:
    """docs/deploy.md has operators add settings to the service (channels, retention); a
    deploy that set every variable anew would drop them, and one that set the same names
    would overwrite them."""
    args = [str(arg) for arg in step("deploy")["args"]]
    assert not [arg for arg in args if arg.split("=", 1)[0] in DEPLOY_FLAGS_THAT_DROP_SETTINGS]
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    added = set()
    for command in re.findall(r"gcloud run services update [^\n]+", deploy_doc):
        for token in shlex.split(command):
            name, _, value = token.partition("=")
            if name in ("--update-env-vars", "--update-secrets"):
                added |= {pair.split("=", 1)[0] for pair in value.split(",")}
    assert {"SMTP_URL", "EMAIL_FROM", "COLLABORATOR_WEBHOOK_URL", "COLLABORATOR_WEBHOOK_SECRET"} <= added
    flags = deploy_flags()
    owned = set(pairs(flags["--update-env-vars"])) | set(pairs(flags["--update-secrets"]))
    assert not added & owned, "the pipeline sets none of what operators add"


def test_the_public_url_defaults_to_the_services_own_url() -> None:
    """QStash signs the URL it publishes to: the first deploy must know it. Cloud Run's
    deterministic URL needs the project number, a built-in substitution, inside another
    substitution, which manual builds allow only with dynamic substitutions."""
    build = cloudbuild()
    assert build["substitutions"]["_PUBLIC_BASE_URL"] == "https://${_SERVICE}-${PROJECT_NUMBER}.${_REGION}.run.app"
    assert build["options"]["dynamicSubstitutions"] is True


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


def test_the_gcloud_path_makes_the_same_exemptions_as_the_json() -> None:
    """Every field the JSON leaves unindexed (`"indexes": []`) has its gcloud command."""
    unindexed = {
        (override["collectionGroup"], override["fieldPath"])
        for override in json.loads((ROOT / "firestore.indexes.json").read_text())["fieldOverrides"]
        if override.get("indexes") == []
    }
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    documented = set(
        (group, field)
        for field, group in re.findall(
            r"gcloud firestore indexes fields update (\w+) --collection-group=(\w+) --disable-indexes", deploy
        )
    )
    assert unindexed == documented and ("jobs", "expireAt") in documented


def test_the_firebase_cli_finds_the_indexes_and_the_image_leaves_them_out() -> None:
    firebase = json.loads((ROOT / "firebase.json").read_text())
    assert firebase == {"firestore": {"indexes": "firestore.indexes.json"}}
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    assert dockerignored("firebase.json", patterns) and dockerignored("firestore.indexes.json", patterns)


def test_the_trigger_is_second_generation_and_runs_as_its_own_account() -> None:
    deploy = (ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    (trigger,) = re.findall(r"gcloud builds triggers create github [^\n]+", deploy)
    assert "--repository=" in trigger and "--region=" in trigger and "--service-account=" in trigger
    assert "_PUBLIC_BASE_URL" not in trigger, "the default is the service's own URL"
    roles = set(re.findall(r"roles/[\w.]+", deploy.split("## 5.")[1].split("## 6.")[0]))
    assert roles == {
        "roles/run.admin",
        "roles/artifactregistry.writer",
        "roles/logging.logWriter",
        "roles/iam.serviceAccountUser",
    }
