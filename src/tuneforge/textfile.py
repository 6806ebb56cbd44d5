"""Text files as editors write them: UTF-8 with or without a byte-order mark, any line ending.

Windows Notepad and Excel's "CSV UTF-8" start a file with a BOM; Python's `utf-8-sig` codec drops
it, so every file a user hands us is read through here (datasets, dataset_info.json, YAML configs,
eval task files). A file in another encoding is never guessed silently -- training on mojibake
is worse than stopping -- but it is named, with the line where UTF-8 fails and the `iconv`
command that converts it. Python has no encoding detector and the usual package for it is not a
dependency of ours, so `guess()` tries the few codecs our users meet (GB18030 covers GBK and
GB2312) and keeps the one whose text looks like language.

Everything here is floor 0: callers turn `TextProblem` into their own ConfigError / DataError.
"""

from __future__ import annotations

import codecs
import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

SAMPLE = 1 << 16  # bytes looked at to name an encoding
# The most frequent Chinese characters (simplified, then the traditional forms of the commonest) and
# full-width punctuation: real Chinese text is full of them, a misdecoded byte stream hardly ever.
COMMON_HAN = set(
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用道"
    "行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日军者意"
    "无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应战向头文体政美相见被利什"
    "二等产或新己制身果加西月话合回特代内信表化老给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各"
    "入几口认条平系气题活更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直资命山金指许统"
    "区保至形社便空决治展科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记南品住告类求据程北边死张"
    "该交规万取格望觉术领共确传师观清今切让识候带导争运笑风步改收根干造言联持组每车亲极服快办议往元证近失转令"
    "准布始怎呢存未远叫单影具字爱流备连调深商算质团集百需价花华城级整离况请技际约示复病息究线似火断精满支视消"
    "越器容照须九增研写称八功吗包片查轻易早除找装广显吧图念六引首医局专费号另周较注语考落随选列响虽推希古众房"
    "半节土投案维划致律足态护七兴孩验责营星够章音跟志底站例防供效续施留讲型料终答紧黄绝奇察母段依批群项故按河"
    "米围江害双境客纪采举父密低朝友诉止细愿千值仍男钱破网热助倒育属坐限船脸职速刻乐否刚毛状率甚独球般普怕校苦"
    "创假久错承印晚试拿脑预谁益阳若哪微继送急血伤素药适波夜省初喜源食险待述习置居劳财环排福欢获模负云停木游树"
    "您"
    "這個們來為說時會對國過發後裡學經麼當沒動現還進樣點開關問長機與從應頭體實將兩見間無種話讓業東車電書"
    "，。！？、：；“”‘’《》（）【】…—"
)
KANA = range(0x3040, 0x3100)  # hiragana and katakana (half-width katakana is what misdecoded Chinese looks like)
HANGUL = range(0xAC00, 0xD7A4)
NAMES = {"gb18030": "GB18030", "big5": "Big5", "shift_jis": "Shift_JIS", "euc_kr": "EUC-KR", "cp1252": "Windows-1252",
         "utf-16-le": "UTF-16LE", "utf-16-be": "UTF-16BE"}
BOMS = [(codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16")]


class TextProblem(ValueError):
    """A file that cannot be read as text: `str()` is the message (without the path, which callers
    put in front), `line` the first line that fails to decode (None when the whole file does)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def reading_codec(encoding: str | None) -> str:
    """The codec to open a file with: UTF-8 with an optional BOM unless the user named another text
    encoding. Raises TextProblem for a name Python does not know."""
    if encoding is None:
        return "utf-8-sig"
    try:
        name = codecs.lookup(encoding).name
        "x".encode(encoding)  # refuses bytes-to-bytes codecs such as base64
    except (LookupError, TypeError, ValueError):
        raise TextProblem(f"unknown encoding {encoding!r} (a Python codec name such as utf-8, gb18030, big5, "
                          "utf-16, shift_jis, cp1252)") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def _codec_for(head: bytes, encoding: str | None, setting: str | None, path: Path) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"  # the mark says UTF-8, whatever else was set
    if encoding is None:
        for bom, name in BOMS:
            if head.startswith(bom):
                raise TextProblem(f"{name} text (it starts with a {name} byte-order mark), not UTF-8; "
                                  + _convert(path, name, setting))
        if head.startswith(b"PK\x03\x04"):
            raise TextProblem("a ZIP archive (an Excel workbook?), not a text file; save it as CSV UTF-8 or JSON")
    return reading_codec(encoding)


@contextmanager
def open_text(path: str | Path, encoding: str | None = None, *, setting: str | None = None,
              newline: str | None = None) -> Iterator[IO[str]]:
    """Open a text file for reading (iterating lines streams it). A decoding failure anywhere inside
    the `with` block becomes TextProblem naming the line, the likely encoding and the fix; `setting`
    says where the user may set `"encoding"` instead (e.g. "its dataset_info.json entry")."""
    path = Path(path)
    with path.open("rb") as raw:
        head = raw.read(4)
    codec = _codec_for(head, encoding, setting, path)
    try:
        with path.open(encoding=codec, newline=newline) as handle:
            yield handle
    except UnicodeDecodeError:
        raise _explain(path, codec, setting) from None


def read_text(path: str | Path, encoding: str | None = None, *, setting: str | None = None) -> str:
    """The whole file as text (a BOM dropped), or TextProblem as `open_text` says."""
    with open_text(path, encoding, setting=setting) as handle:
        return handle.read()


def parse_json(text: str, *, one_line: bool = False) -> Any:
    """`json.loads`, with every way it can fail as TextProblem: bad syntax (line and column; only the
    column for `one_line`, e.g. a JSONL line), a number longer than Python converts, nesting deeper
    than Python's recursion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"column {exc.colno}" if one_line else f"line {exc.lineno} column {exc.colno}"
        raise TextProblem(f"not valid JSON at {where}: {exc.msg}", exc.lineno) from None
    except RecursionError:
        raise TextProblem("JSON nested too deeply to read (lists or objects hundreds of levels deep)") from None
    except ValueError as exc:  # Python refuses integers of more than 4300 digits
        raise TextProblem(f"a number in the JSON is too long to read ({exc.args[0].split(';')[0]})") from None


def _breaks(text: str) -> int:
    """Line breaks as Python's text files count them: LF, CRLF or a lone CR."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _first_bad_line(path: Path, codec: str) -> tuple[int, int, bytes, bool]:
    """(line, byte offset, the bytes that fail, whether the file ends there) of the first place `codec`
    cannot decode. Lines are counted on the decoded text, so this holds for any codec; the file is
    streamed, never held whole."""
    decoder = codecs.getincrementaldecoder(codec)()
    line, offset = 1, 0
    with path.open("rb") as raw:
        for chunk in iter(lambda: raw.read(SAMPLE), b""):
            try:
                line += _breaks(decoder.decode(chunk))
            except UnicodeDecodeError as exc:  # exc.object: the bytes still pending, then this chunk
                line += _breaks(exc.object[:exc.start].decode(codec, errors="replace"))
                return line, offset + exc.start, exc.object[exc.start:exc.end], False
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return line, offset, exc.object[exc.start:exc.end], True
    return line, offset, b"", True


def _explain(path: Path, codec: str, setting: str | None) -> TextProblem:
    """Why `path` does not decode with `codec`: the first bad line, and what encoding it seems to be in."""
    line, offset, bad, at_end = _first_bad_line(path, codec)
    shown = " ".join(f"0x{b:02X}" for b in bad[:4])
    if codec != "utf-8-sig":
        return TextProblem(f"line {line} is not valid {codec} text ({shown}), although \"encoding\" says {codec}; "
                           "check the encoding, or convert the file to UTF-8", line)
    if at_end:
        return TextProblem(f"line {line}: the file ends in the middle of a UTF-8 character ({shown}); it may have "
                           "been cut short", line)
    found = guess(_sample(path, offset))
    if found == "utf-8":
        return TextProblem(f"line {line} is not valid UTF-8 ({shown}) although the rest of the file is; the file "
                           "may be damaged or pasted together from several encodings: fix or remove that line", line)
    if found is None:
        return TextProblem(f"not UTF-8 text (line {line}: {shown}) and not an encoding tuneforge recognises; save "
                           "it as UTF-8 in your editor", line)
    return TextProblem(f"{found} text, not UTF-8 (first at line {line}); " + _convert(path, found, setting), line)


def _sample(path: Path, offset: int) -> bytes:
    """The start of the file, and the lines around `offset` when that is further in."""
    with path.open("rb") as raw:
        sample = raw.read(SAMPLE)
        if offset > SAMPLE // 2:
            raw.seek(max(SAMPLE, offset - 4096))
            later = raw.read(SAMPLE)
            sample = sample[:sample.rfind(b"\n") + 1] + later[later.find(b"\n") + 1:]
    return sample


def _convert(path: Path, name: str, setting: str | None) -> str:
    target = path.with_name(f"{path.stem}.utf8{path.suffix}")
    text = f"convert it: iconv -f {name} -t UTF-8 {shlex.quote(str(path))} > {shlex.quote(str(target))}"
    if setting:
        text += f' (or set "encoding": "{name.lower()}" in {setting})'
    return text


def _score(text: str, wanted: str) -> float:
    """Share of the non-ASCII characters that look like `wanted` text (han, kana or hangul)."""
    wide = [c for c in text if ord(c) > 127]
    if not wide:
        return 0.0
    if wanted == "han":
        hits = sum(c in COMMON_HAN for c in wide)
    elif wanted == "kana":
        hits = sum(ord(c) in KANA or c in COMMON_HAN for c in wide)
    else:
        hits = sum(ord(c) in HANGUL for c in wide)
    return hits / len(wide)


def _decodes(sample: bytes, codec: str) -> str | None:
    try:  # a character cut at the end of the sample is fine
        return codecs.getincrementaldecoder(codec)().decode(sample)
    except UnicodeDecodeError:
        return None


def guess(sample: bytes) -> str | None:
    """The encoding `sample` (the start of a file that is not pure UTF-8) is most likely in, as iconv
    names it; "utf-8" when the other lines are UTF-8 and only some bytes are broken; None if unknown."""
    sample = sample.removeprefix(codecs.BOM_UTF8)
    as_utf8 = [c for c in sample.decode("utf-8", errors="replace") if ord(c) > 127]
    if as_utf8.count("\ufffd") * 5 < len(as_utf8):
        return "utf-8"  # mostly good UTF-8: a damaged file, not another encoding
    if sample.count(0) > len(sample) // 8:
        odd = sample[1::2].count(0) > sample[0::2].count(0)
        return NAMES["utf-16-le" if odd else "utf-16-be"]
    scores = {}
    for codec in ("gb18030", "big5"):
        text = _decodes(sample, codec)
        if text is not None:
            scores[codec] = _score(text, "han")
    if scores and max(scores.values()) >= 0.1:
        return NAMES[max(scores, key=scores.__getitem__)]  # ties go to GB18030, listed first
    for codec, wanted in (("shift_jis", "kana"), ("euc_kr", "hangul")):
        text = _decodes(sample, codec)
        if text is not None and _score(text, wanted) >= 0.5:
            return NAMES[codec]
    if _decodes(sample, "cp1252") is not None:
        return NAMES["cp1252"]
    return None
