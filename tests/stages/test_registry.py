"""The three lists of stage names agree: the config's `stage` Literal (what a user may write), the
per-stage facts the lower floors read, and the registry `tuneforge train` runs from."""

from __future__ import annotations

import typing

from tuneforge.config.schema import MethodConfig
from tuneforge.config.stages import STAGE_FACTS
from tuneforge.stages import StageDef
from tuneforge.stages.registry import all_stages, get_stage

STAGES = all_stages()


def test_every_accepted_stage_has_facts_and_a_runner():
    accepted = set(typing.get_args(MethodConfig.model_fields["stage"].annotation))
    assert accepted == set(STAGE_FACTS) == set(STAGES)


def test_registry_keys_are_the_stages_own_names():
    for name, stage in STAGES.items():
        assert stage.name == name
        assert get_stage(name) is stage


def test_an_sft_run_does_not_import_trl():
    """Stages load on demand: sft and pt never import trl (the preference and online stages do)."""
    import subprocess
    import sys

    code = ("import sys; from tuneforge.stages.registry import get_stage; get_stage('sft'); get_stage('pt'); "
            "print('trl' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_every_stage_is_a_stagedef_with_a_trainer():
    for stage in STAGES.values():
        assert isinstance(stage, StageDef), stage
        assert callable(stage.train), stage.name
