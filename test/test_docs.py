"""The documentation reads as user documentation, and its links resolve.

The README and docs/ describe the package as it is: no work log (numbered
work periods, the machine a measurement ran on called "the VM", paths
outside the repository, issue numbers as history). The same patterns are
not wanted in the code, the tests, the Makefile, config/ and the shipped
models' metadata either, since their comments, messages and records are read
as documentation too.
"""

from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
README_MAX_LINES = 250

# What reads as a work log, each with the name given in failure reports.
WORK_LOG_PATTERNS = [
    ('numbered work period', re.compile(r'\bsessions? \d+', re.IGNORECASE)),
    ('"this VM"', re.compile(r'\bthis VM\b', re.IGNORECASE)),
    ('"the VM"', re.compile(r'\bthe VM\b', re.IGNORECASE)),
    ('"VM" as a word', re.compile(r'\bVMs?\b', re.IGNORECASE)),
    ('path outside the repository', re.compile(r'/(?:work|tmp|farm)/')),
    # "#12" after a space or bracket, as prose writes an issue number; not
    # "owner/repo#12" (an upstream reference), '#123456' (a colour) or "[-+#0]".
    ('issue number', re.compile(r'(?:^|(?<=[\s(]))#\d+\b')),
    ('"the issue"', re.compile(r'\bthe issue\b', re.IGNORECASE)),
]


def _python_files(folder):
    return sorted((ROOT / folder).rglob('*.py')) if (ROOT / folder).is_dir() else []


def _text_files(folder):
    """Every file under ``folder`` that is UTF-8 text (binary files are not prose)."""
    files = []
    for path in sorted((ROOT / folder).rglob('*')):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b'\0' in data:
            continue
        try:
            data.decode('utf-8')
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def _test_files():
    """The tests, except this file: its patterns and examples are the phrases themselves."""
    return [p for p in _python_files('test') if p.name != Path(__file__).name]


def _model_metadata():
    """What a shipped model records of itself (the tokenizer's vocabulary is data, not prose)."""
    return sorted((ROOT / 'models').rglob('*.yaml'))


def _markdown_files():
    return [README, *sorted((ROOT / 'docs').glob('*.md'))]


# The scanned files, by area: one test each, so a report names the area.
SCANNED = {
    'README and docs': _markdown_files,
    'Makefile': lambda: [ROOT / 'Makefile'],
    'config': lambda: _text_files('config'),
    'dyn_dnn_ros': lambda: _python_files('dyn_dnn_ros'),
    'bench': lambda: _python_files('bench'),
    'scripts': lambda: _text_files('scripts'),
    'launch': lambda: _python_files('launch'),
    'test': _test_files,
    'models': _model_metadata,
}


def work_log_hits(paths):
    """``(file, line number, pattern name, matched text)`` for every match."""
    hits = []
    for path in paths:
        text = path.read_text(encoding='utf-8')
        for number, line in enumerate(text.splitlines(), start=1):
            taken = set()   # characters already reported: "the VM" once, not twice
            for name, pattern in WORK_LOG_PATTERNS:
                for match in pattern.finditer(line):
                    span = set(range(*match.span()))
                    if span & taken:
                        continue
                    taken |= span
                    hits.append((path.relative_to(ROOT).as_posix(), number, name,
                                 match.group(0)))
    return hits


def format_hits(hits):
    """One line per hit, grouped by file: ``file:line: matched text (pattern)``."""
    lines = []
    for file in sorted({hit[0] for hit in hits}):
        lines.append(f'{file}:')
        for _, number, name, matched in (hit for hit in hits if hit[0] == file):
            lines.append(f'  {file}:{number}: {matched!r} ({name})')
    return '\n'.join(lines)


@pytest.mark.parametrize('area', list(SCANNED))
def test_no_work_log(area):
    paths = SCANNED[area]()
    assert paths, f'{area}: no files found to scan'
    hits = work_log_hits(paths)
    assert not hits, (f'{len(hits)} work-log phrase(s) in {area}; write what the code does '
                      f'and where the repository keeps it:\n' + format_hits(hits))


def test_patterns_catch_what_they_should():
    """The patterns find a work log and leave ordinary prose and code alone."""
    flagged = ['session 12 made it', 'in sessions 7 to 10', 'on this VM', 'the VM was busy',
               'two VMs', 'see /work/scratch/x.py', 'in /tmp/fresh', '/farm/run',
               'as asked in #42', '(#7)', 'as the issue asks']
    clean = ['a test session picks a domain', 'ros2/rclpy#1452', "color='#123456'",
             '&#8212;', r"r'[-+#0]*\d'", 'vmstat', 'the issues page', 'a # 1 comment',
             'models/translation']
    for line in flagged:
        assert any(p.search(line) for _, p in WORK_LOG_PATTERNS), line
    for line in clean:
        assert not any(p.search(line) for _, p in WORK_LOG_PATTERNS), line


def test_readme_is_short_and_names_the_test_command():
    lines = README.read_text(encoding='utf-8').splitlines()
    assert len(lines) <= README_MAX_LINES, \
        f'README.md has {len(lines)} lines; at most {README_MAX_LINES}: move detail to docs/'
    assert any('`make test`' in line for line in lines), 'README.md must name `make test`'


LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
FENCE = re.compile(r'^\s*(```|~~~)')


def relative_links(path):
    """``(line number, target)`` of every relative Markdown link outside code blocks.

    A link to a heading of the same page (``#anchor``) counts, as a link to
    the page itself.
    """
    links = []
    in_code = False
    for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
        if FENCE.match(line):
            in_code = not in_code
            continue
        if in_code:
            continue
        for match in LINK.finditer(re.sub(r'`[^`]*`', '', line)):
            target = match.group(1)
            if re.match(r'[a-z][a-z0-9+.-]*:', target, re.IGNORECASE):
                continue   # a URL (http:, mailto:)
            links.append((number, target))
    return links


def heading_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file ("## Two words" -> two-words)."""
    anchors, seen = set(), {}
    in_code = False
    for line in path.read_text(encoding='utf-8').splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        match = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
        if in_code or not match:
            continue
        slug = re.sub(r'[^\w\- ]', '', match.group(1).lower()).replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f'{slug}-{count}')
    return anchors


def test_relative_links_point_to_existing_files():
    broken = []
    for path in _markdown_files():
        for number, target in relative_links(path):
            file, _, anchor = target.partition('#')
            linked = path.parent / file if file else path
            where = f'{path.relative_to(ROOT).as_posix()}:{number}: {target}'
            if not linked.exists():
                broken.append(f'{where} (no such file)')
            elif anchor and linked.suffix == '.md' and anchor not in heading_anchors(linked):
                broken.append(f'{where} (no such heading)')
    assert not broken, 'links that lead nowhere:\n' + '\n'.join(broken)


def test_the_link_check_finds_links():
    """The link pattern sees the README's links, so an empty check cannot pass silently."""
    assert relative_links(README), 'README.md links to no file: is the link pattern broken?'
