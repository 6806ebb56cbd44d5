"""The three lists of stage names agree: the config's `stage` Literal (what a user may write), the
per-stage facts the lower floors read, and the registry `tuneforge train` runs from."""

from __future__ import annotations

import typing

from tuneforge.config.schema import MethodConfig
from tuneforge.config.stages import STAGE_FACTS
from tuneforge.stages import StageDef
from tuneforge.stages.registry import STAGES, get_stage


def test_every_accepted_stage_has_facts_and_a_runner():
    accepted = set(typing.get_args(MethodConfig.model_fields["stage"].annotation))
    assert accepted == set(STAGE_FACTS) == set(STAGES)


def test_registry_keys_are_the_stages_own_names():
    for name, stage in STAGES.items():
        assert stage.name == name
        assert get_stage(name) is stage


def test_every_stage_is_a_stagedef_with_a_trainer():
    for stage in STAGES.values():
        assert isinstance(stage, StageDef), stage
        assert callable(stage.train), stage.name
