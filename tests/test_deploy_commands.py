"""Every deployment command, checked offline by the installed gcloud itself
(qjobs/devtools/check_deploy.py): docs/deploy.md's commands and the pipeline's deploy through
its argument parser, cloudbuild.yaml through its build config loader. Each check is shown
able to fail first."""

from pathlib import Path

import pytest

from qjobs.devtools.check_deploy import (
    CLOUDBUILD,
    DEPLOY_DOC,
    CheckError,
    all_commands,
    check_commands,
    config_error,
    doc_commands,
    expand,
    heredocs,
)

pytestmark = [pytest.mark.processes, pytest.mark.timeout(300)]


def test_a_flag_gcloud_does_not_know_is_refused() -> None:
    (checked,) = check_commands(["gcloud run deploy trip-jobs --region=us-central1 --set-env-varz=A=1"])
    assert checked.refused is not None and "unrecognized arguments" in checked.refused


def test_every_documented_command_and_the_pipelines_deploy_parse() -> None:
    commands = all_commands()
    assert len(commands) >= 35 and commands[-1].startswith("gcloud run deploy ")
    refused = [(c.command, c.refused) for c in check_commands(commands, heredocs(DEPLOY_DOC.read_text())) if c.refused]
    assert refused == []


def test_the_build_config_loads_and_a_key_cloud_build_does_not_know_is_refused(tmp_path: Path) -> None:
    assert config_error() is None
    broken = tmp_path / "cloudbuild.yaml"
    broken.write_text(CLOUDBUILD.read_text().replace("dynamicSubstitutions:", "dynamicSubstitution:"))
    assert "dynamicSubstitution" in (config_error(broken) or "")


def test_commands_are_found_inside_pipes_substitutions_and_loops() -> None:
    text = """```sh
export N=$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')
printf '%s' 'x' | gcloud secrets create s --data-file=-
for role in a b; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" \\
    --role="$role"
done
# gcloud commented out
```"""
    assert list(doc_commands(text)) == [
        """gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)'""",
        "gcloud secrets create s --data-file=-",
        'gcloud projects add-iam-policy-binding "$PROJECT_ID" --role="$role"',
    ]


def test_a_variable_without_a_sample_value_is_an_error_not_a_guess() -> None:
    with pytest.raises(CheckError, match=r"\$UNKNOWN"):
        expand("gcloud run deploy $UNKNOWN")
