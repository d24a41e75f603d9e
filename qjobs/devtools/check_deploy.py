"""`make check-deploy`: every deployment command checked offline against the installed gcloud.

- Each `gcloud` command in docs/deploy.md, and the deploy step of cloudbuild.yaml, goes
  through gcloud's own argument parser: it is run with sample values, a bogus project and a
  fresh gcloud configuration (no account, no prompts), so it stops, after parsing, at "no
  active account" (exit 1); a flag or value gcloud does not accept stops it at parsing
  (exit 2). Nothing reaches Google Cloud.
- cloudbuild.yaml goes through gcloud's own build config loader, which refuses a key or a
  value that Cloud Build would refuse.

The Google Cloud CLI is needed (it is already, for the Firestore emulator).
"""

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
CLOUDBUILD = ROOT / "cloudbuild.yaml"
PROJECT = "qjobs-offline-check"
SAMPLES = {
    "PROJECT_ID": PROJECT,
    "PROJECT_NUMBER": "123456789012",
    "REGION": "us-central1",
    "SERVICE": "trip-jobs",
    "REPOSITORY": "jobs",
    "SA": f"trip-jobs@{PROJECT}.iam.gserviceaccount.com",
    "BUILD_SA": f"trip-jobs-build@{PROJECT}.iam.gserviceaccount.com",
    "secret": "qstash-current-signing-key",
    "role": "roles/run.admin",
    "COMMIT_SHA": "0" * 40,
}
"""A value for each shell variable and build substitution the commands use."""
PARSE_FAILURES = ("unrecognized arguments", "argument --", "Invalid choice", "invalid choice", "is not a valid")
LOAD_CONFIG = """
import sys
from googlecloudsdk.api_lib.cloudbuild import cloudbuild_util, config
config.LoadCloudbuildConfigFromPath(sys.argv[1], cloudbuild_util.GetMessagesModule())
"""


class CheckError(RuntimeError):
    pass


@dataclass(frozen=True)
class Checked:
    command: str
    refused: str | None
    """gcloud's parse error, or None when the command parsed."""


def gcloud() -> str:
    found = shutil.which("gcloud")
    if found is None:
        raise CheckError("the Google Cloud CLI (gcloud) is not on PATH; see README for the emulator's set-up")
    return found


def expand(command: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in SAMPLES:
            raise CheckError(f"no sample value for ${name} in: {command}")
        return SAMPLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, command)


def doc_commands(text: str) -> Iterator[str]:
    """The gcloud commands of the document's `sh` blocks, continuation lines joined, with
    what a pipe, a `$(...)` or a loop puts around them left out."""
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            inner = re.findall(r"\$\((gcloud .*)\)\s*$", line)
            if inner:
                yield from inner
                continue
            start = line.find("gcloud ")
            if start >= 0 and not line.lstrip().startswith("#"):
                yield re.split(r"\s\|\s|\s&&\s|;\s*done\b|;\s*$", line[start:])[0].strip()


def deploy_step_command() -> str:
    build = yaml.safe_load(CLOUDBUILD.read_text())
    (deploy,) = [step for step in build["steps"] if step.get("id") == "deploy"]
    substitutions = {name: str(value) for name, value in build["substitutions"].items()}
    args = [str(arg) for arg in deploy["args"]]
    for _ in range(3):  # substitutions may refer to other substitutions
        args = [re.sub(r"\$\{(_\w+)\}", lambda m: substitutions[m.group(1)], arg) for arg in args]
    return shlex.join(["gcloud", *(expand(arg) for arg in args)])


HEREDOC = re.compile(r"cat > (\S+) <<'?(\w+)'?\n(.*?)\n\2\n", re.DOTALL)


def heredocs(text: str) -> dict[str, str]:
    """Files the document writes with `cat > FILE <<TAG`: a command may read one as it parses."""
    return {path: body + "\n" for path, _, body in HEREDOC.findall(text)}


def check(command: str, config_dir: str, files: dict[str, str] | None = None) -> Checked:
    expanded = expand(command)
    for original, written in (files or {}).items():
        expanded = expanded.replace(original, written)
    argv = shlex.split(expanded)
    if not any(arg.startswith("--project") for arg in argv):
        argv.append(f"--project={PROJECT}")
    env = {
        "PATH": "/usr/bin:/bin",
        "CLOUDSDK_CONFIG": config_dir,
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
    }
    done = subprocess.run(
        [gcloud(), *argv[1:]],
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    refused = done.returncode == 2 or any(marker in done.stderr for marker in PARSE_FAILURES)
    return Checked(command, done.stderr.strip() if refused else None)


def check_commands(commands: list[str], files: dict[str, str] | None = None) -> list[Checked]:
    """Each command checked (in parallel: gcloud takes a second to start), the files the
    document writes written first, to a scratch folder that stands in for their paths."""
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(max_workers=8) as pool:
        written = {}
        for n, (path, body) in enumerate((files or {}).items()):
            written[path] = str(Path(scratch) / f"file-{n}{Path(path).suffix}")
            Path(written[path]).write_text(body)
        config_dir = str(Path(scratch) / "gcloud-config")
        return list(pool.map(lambda command: check(command, config_dir, written), commands))


def config_error(path: Path = CLOUDBUILD) -> str | None:
    """gcloud's build config loader's complaint about the file, or None."""
    where = subprocess.run(
        [gcloud(), "info", "--format=value(installation.sdk_root,basic.python_location)"],
        capture_output=True,
        text=True,
        check=True,
    )
    sdk_root, python = where.stdout.strip().split("\t")
    lib = Path(sdk_root) / "lib"
    done = subprocess.run(
        [python, "-c", LOAD_CONFIG, str(path)],
        check=False,
        env={"PYTHONPATH": f"{lib}:{lib / 'third_party'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


def all_commands() -> list[str]:
    return [*doc_commands(DEPLOY_DOC.read_text()), deploy_step_command()]


def main() -> int:
    try:
        commands = all_commands()
        results = check_commands(commands, heredocs(DEPLOY_DOC.read_text()))
        loaded = config_error()
    except CheckError as error:
        print(f"check-deploy: {error}", file=sys.stderr)
        return 1
    for result in results:
        print(("refused  " if result.refused else "parsed   ") + result.command[:150])
        if result.refused:
            print("         " + result.refused.splitlines()[0])
    print(("refused  " if loaded else "loaded   ") + f"{CLOUDBUILD.name} (gcloud's build config loader)")
    if loaded:
        print("         " + loaded)
    failures = sum(1 for result in results if result.refused) + (1 if loaded else 0)
    print(f"{len(results)} gcloud commands, 1 build config: {failures} refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
