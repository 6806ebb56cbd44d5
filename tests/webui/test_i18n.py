"""Every label, hint and message the page shows exists in English and in Chinese (i18n.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

from tuneforge.webui import i18n, layout

WEBUI = Path(i18n.__file__).parent


def test_every_visible_field_and_message_has_english_and_chinese():
    assert i18n.missing(layout.visible_keys()) == []


def test_every_word_the_code_asks_for_is_in_the_file():
    """Words named in the code (text("..."), word(..., "...") and the f-string families) all exist."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in WEBUI.glob("*.py"))
    names = set(re.findall(r'(?:page\.text|i18n\.text|page\.word)\((?:[^()]|\([^()]*\))*?"([a-z_]+)"', source))
    names |= {f"group_{g.name}" for tab in layout.TABS for g in layout.tab_groups(tab)} | {"group_launch"}
    names |= {f"status_{s}" for s in ("queued", "running", "stopping", "finished", "stopped", "failed", "killed",
                                      "cancelled", "unknown")}
    names |= {f"tab_{t}" for t in ("train", "runs", "evaluate", "chat", "export")}
    names |= {f"chart_{c}" for c in ("loss", "lr", "grad_norm")}
    names |= {f"stop_{s}" for s in ("stopping", "killed", "cancelled", "idle")} | {"run_started", "run_queued"}
    missing = sorted(n for n in names if n not in i18n.table()["ui"])
    assert not missing, missing
    assert len(names) > 60  # the scan found the code's words


def test_labels_name_the_config_key_and_help_switches_language():
    assert i18n.label("learning_rate", "zh") == "学习率 · learning_rate"
    assert i18n.label("learning_rate", "en") == "Learning rate · learning_rate"
    assert i18n.hint("learning_rate", "en") == "The peak learning rate of AdamW"
    assert "学习率" in i18n.hint("learning_rate", "zh")
    assert i18n.text("saved", "zh", path="保存/a.yaml") == "已保存 保存/a.yaml"
