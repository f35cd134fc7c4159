"""The coursework loop of teachers.md, end to end, with the real nbgrader (issue 30).

For every chapter with an automatically graded exercise, the assignment is built
(``grading/assignment.py``), released (``nbgrader generate_assignment``), and one
submission per kind of answer is autograded. Every auto-graded function meets every kind:

* ``right``: the chapter's own solution: every mark;
* ``empty``: the stub as released; ``wrong``: a typical mistake that runs;
* ``shortcut``: an answer that calls the library's implementation of the exercise;
* ``tamper``: the answer returns garbage after the answer cell replaced the checker in its
  module and ``torch.allclose`` (issue 30's one-liner);
* ``syntax``: a syntax error; ``loop``: a function that never returns;

and only ``right`` earns marks. Kinds are spread over the submissions (a Latin square), so
that one submission mixes them, as a real one does: a syntax error or a tampering cell in one
exercise must leave the others graded. The test also checks the messages (one line, no
traceback through attnlib), nbgrader's log (no warning about a cell's output, no relative
root), the autograding time per submission, the feedback (no hidden tests in it), the
hand-marking step without a server (``grading/hand_marks.py``) and the exported CSV.

A second, fast part runs ``grading/hidden.py`` on a gallery of attacks on the grader itself
(torch's comparisons replaced, a tensor that claims to equal anything, Python's built-ins
rebound, the profiler switched off, the library run in a thread, the hidden values read
from the grader's frame...) and on torch's own one-line implementations of the exercises.

``GRADING_CHAPTERS=01_activation,03_output_projection`` limits it to some chapters.
"""
from __future__ import annotations

import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NBGRADER = BIN / "nbgrader"
sys.path[:0] = [str(ROOT / "grading"), str(ROOT / "scripts")]
import assignment  # noqa: E402
import student_edition as se  # noqa: E402

# --------------------------------------------------------------------------------------
# The answers, per checker (the exercise), as function bodies; the function's name and
# arguments come from the released stub.
# --------------------------------------------------------------------------------------
SYNTAX = "return torch.zeros(1) +"
LOOP = "while True:\n    pass"

ANSWERS = {
    "check_attention": {
        "wrong": ("return torch.softmax(Q @ K.transpose(-2, -1), dim=-1) @ V", "wrong values"),
        "shortcut": ("from attnlib import attention\nreturn attention(Q, K, V)", "attnlib's `attention`"),
        "shortcut-torch": ("return torch.nn.functional.scaled_dot_product_attention(Q, K, V)",
                           "torch's `scaled_dot_product_attention`"),
        "tamper": ("return None", "not None"),
    },
    "check_rank1_residual": {
        "wrong": ("return (X - X.mean(-1, keepdim=True)).flatten(1).norm(dim=1) / X.flatten(1).norm(dim=1)",
                  "wrong values"),
        "shortcut": ("from attnlib.probes import rank1_residual\nreturn rank1_residual(X)",
                     "attnlib's `rank1_residual`"),
        "tamper": ("return None", "not None"),
    },
    "check_split_heads": {
        "wrong": ("b, n, f = x.shape\nreturn x.reshape(b, num_heads, n, f // num_heads)", "wrong values"),
        "shortcut": ("import attnlib\nreturn attnlib.split_heads(x, num_heads)", "attnlib's `split_heads`"),
        "tamper": ("return x", "shape"),
    },
    "check_merge_heads": {
        "wrong": ("b, h, n, d = heads.shape\nreturn heads.reshape(b, n, h * d)", "wrong values"),
        "shortcut": ("from attnlib.mha import merge_heads\nreturn merge_heads(heads)", "attnlib's `merge_heads`"),
        "tamper": ("return heads.sum()", "shape"),
    },
    "check_mha_from_heads": {
        "wrong": ("d, h = mha.embed_dim, mha.num_heads\nd_k = d // h\nW, b = mha.in_proj_weight, mha.in_proj_bias\n"
                  "heads = []\nfor i in range(h):\n"
                  "    q, k, v = (x @ W[j * d + i * d_k:j * d + (i + 1) * d_k].T + b[j * d + i * d_k:j * d + (i + 1) * d_k]"
                  " for j in range(3))\n"
                  "    heads.append(torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v)  # not scaled\n"
                  "return mha.out_proj(torch.cat(heads, dim=-1))", "wrong values"),
        "shortcut": ("from attnlib import MultiHeadAttention\n"
                     "m = MultiHeadAttention(mha.embed_dim, mha.num_heads)\nd = mha.embed_dim\n"
                     "W, b = mha.in_proj_weight, mha.in_proj_bias\n"
                     "for k, name in enumerate('QKV'):\n"
                     "    getattr(m, 'W_' + name).data = W[k * d:(k + 1) * d].T.clone()\n"
                     "    getattr(m, 'b_' + name).data = b[k * d:(k + 1) * d].clone()\n"
                     "m.W_O.data, m.b_O.data = mha.out_proj.weight.T.clone(), mha.out_proj.bias.clone()\n"
                     "return m(x)", "attnlib's `MultiHeadAttention.forward`"),
        "shortcut-torch": ("return mha(x, x, x, need_weights=False)[0]", "torch's `MultiheadAttention.forward`"),
        "tamper": ("return torch.zeros_like(x)", "wrong values"),
    },
    "check_parameter_count": {
        "wrong": ("return 4 * d_model * d_model + 4 * d_model  # K/V heads ignored", "too high"),
        "shortcut": ("from attnlib.counting import mha_parameter_count\n"
                     "return mha_parameter_count(d_model, num_heads, num_kv_heads=num_kv_heads)['total']",
                     "attnlib's `mha_parameter_count`"),
        "tamper": ("return 0", "too low"),
    },
    "check_gauge": {
        "wrong": ("return W_V_h @ M, M @ W_O_h  # M where its inverse belongs", "wrong values"),
        "shortcut": ("from attnlib import MultiHeadAttention\nfrom attnlib.circuits import apply_gauge\n"
                     "d_model, d_k = W_V_h.shape\nh = d_model // d_k\n"
                     "mha = MultiHeadAttention(d_model, h, bias=False).double()\n"
                     "mha.W_V.data[:, :d_k], mha.W_O.data[:d_k] = W_V_h, W_O_h\n"
                     "Ms = torch.eye(d_k, dtype=M.dtype).repeat(h, 1, 1)\nMs[0] = M\n"
                     "g = apply_gauge(mha, Ms)\nreturn g.W_V[:, :d_k].detach(), g.W_O[:d_k].detach()",
                     "attnlib's `apply_gauge`"),
        "tamper": ("return None", "not None"),
    },
    "check_fuse": {
        "wrong": ("return W_O @ W_1, b_1  # b_O forgotten", "wrong values"),
        "shortcut": ("from attnlib import TransformerBlock\nfrom attnlib.circuits import FusedAttentionMLP\n"
                     "d, d_ff = W_1.shape\n"
                     "block = TransformerBlock(d, 1, d_ff, norm='none', residual=False).double()\n"
                     "block.attn.W_O.data, block.attn.b_O.data = W_O.clone(), b_O.clone()\n"
                     "block.mlp.linear1.weight.data, block.mlp.linear1.bias.data = W_1.T.clone(), b_1.clone()\n"
                     "fused = FusedAttentionMLP.from_block(block)\n"
                     "return fused.W_fused.detach(), fused.b_fused.detach()", "attnlib's `FusedAttentionMLP.from_block`"),
        "tamper": ("return W_O, b_O", "shape"),
    },
    "check_relu_attention": {
        "wrong": ("return torch.relu(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])) @ V  # not divided by n",
                  "wrong values"),
        "shortcut": ("import attnlib\nreturn attnlib.attention(Q, K, V, normaliser='relu')", "attnlib's `attention`"),
        "tamper": ("return V", "wrong values"),
    },
    "check_sigmoid_attention": {
        "wrong": ("return torch.sigmoid(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])) @ V  # no -log n bias",
                  "wrong values"),
        "shortcut": ("from attnlib.sdpa import attention\nreturn attention(Q, K, V, normaliser='sigmoid')",
                     "attnlib's `attention`"),
        "tamper": ("return None", "not None"),
    },
    "check_linear_recurrence": {
        "wrong": ("phi_q, phi_k = F.elu(Q) + 1, F.elu(K) + 1\nS = Q.new_zeros(Q.shape[0], Q.shape[2], V.shape[2])\n"
                  "out = []\nfor i in range(Q.shape[1]):\n"
                  "    S = S + phi_k[:, i, :, None] * V[:, i, None, :]\n"
                  "    out.append((phi_q[:, i, None, :] @ S)[:, 0])  # no normaliser\n"
                  "return torch.stack(out, dim=1)", "wrong values"),
        "shortcut": ("from attnlib.alternatives import linear_attention_recurrent\n"
                     "return linear_attention_recurrent(Q, K, V)", "attnlib's `linear_attention_recurrent`"),
        "tamper": ("return torch.zeros(1)", "shape"),
    },
    "check_attention_pooling": {
        "wrong": ("return x.mean(dim=1)  # mean pooling", "wrong values"),
        "shortcut": ("from attnlib.pooling import AttentionPooling\npool = AttentionPooling(x.shape[-1])\n"
                     "pool.query.data = q\nreturn pool(x)", "attnlib's `AttentionPooling.forward`"),
        "shortcut-torch": ("query = q.expand(x.shape[0], 1, -1)\n"
                           "return torch.nn.functional.scaled_dot_product_attention(query, x, x).squeeze(1)",
                           "torch's `scaled_dot_product_attention`"),
        "tamper": ("return x.sum(1)", "wrong values"),
    },
}
#: What each kind of answer must say in its graded cell (besides the ANSWERS' own fragments).
SAYS = {"right": "passed the hidden tests", "empty": "not answered yet", "syntax": "syntax error",
        "loop": "did not finish"}
KINDS = ["right", "empty", "wrong", "shortcut", "tamper", "syntax", "loop"]


def kinds_for(checker):
    return KINDS


def tamper_prelude(checker, module):
    """Issue 30's one-liner (the checker replaced in its module), and torch.allclose replaced too."""
    return (f"import attnlib.checks.{module} as m; m.{checker} = lambda *a, **k: print('passed')\n"
            "import torch; torch.allclose = lambda *a, **k: True\n")


# --------------------------------------------------------------------------------------
# Submissions
# --------------------------------------------------------------------------------------
STUB = re.compile(r"^(?P<indent>[ \t]*)# YOUR CODE HERE\n[ \t]*raise NotImplementedError\(\)", re.M)


def functions(source_nb):
    """``{function: (checker, checker module, graded cell's grade_id, points)}`` of an assignment source."""
    found = {}
    for cell in source_nb.cells:
        nbg = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if nbg.get("grade") and "BEGIN HIDDEN TESTS" in cell.source:
            module = re.search(r"attnlib\.checks\.(\w+) import", cell.source).group(1)
            for checker, fn in re.findall(r"^self_check\((\w+), '(\w+)'\)", cell.source, flags=re.M):
                found[fn] = (checker, module, nbg["grade_id"], nbg["points"])
    return found


def solution_bodies(source_nb):
    """``{function: its solution lines}``, from the source's BEGIN/END SOLUTION markers."""
    bodies = {}
    for cell in source_nb.cells:
        lines = cell.source.split("\n")
        for b, e in se.markers(cell.source):
            name = next(m.group(1) for line in reversed(lines[:b]) for m in [re.match(r"\s*def (\w+)\(", line)] if m)
            indent = len(lines[b]) - len(lines[b].lstrip())
            bodies[name] = "\n".join(line[indent:] for line in lines[b + 1:e])
    return bodies


def answer_cell(release_source, kinds, source_nb, fns):
    """The released cell's stubs filled in with each function's kind of answer."""
    bodies = solution_bodies(source_nb)
    prelude = ""

    def fill(m):
        nonlocal prelude
        before = release_source[:m.start()]
        name = re.findall(r"def (\w+)\(", before)[-1]
        if name not in fns:  # code that is marked by hand (with a written answer): the solution
            return "\n".join(m.group("indent") + line for line in bodies[name].split("\n"))
        kind = kinds.get(name, "right")
        checker, module = fns[name][0], fns[name][1]
        body = {"right": bodies[name], "syntax": SYNTAX, "loop": LOOP}.get(kind)
        if kind == "empty":
            return m.group(0)
        if body is None:
            body = ANSWERS[checker][kind][0]
        if kind == "tamper":
            prelude += tamper_prelude(checker, module)
        return "\n".join(m.group("indent") + line for line in body.split("\n"))

    filled = STUB.sub(fill, release_source)
    return prelude + filled


def plan(fns):
    """One dict ``{function: kind}`` per submission: every function meets each of its kinds once."""
    names = sorted(fns)
    count = max(len(kinds_for(fns[f][0])) for f in names)
    return [{f: kinds_for(fns[f][0])[(i + j) % len(kinds_for(fns[f][0]))] for i, f in enumerate(names)}
            for j in range(count)]


def expected_score(fn, kinds, fns, release_nb):
    """Full marks for a right answer whose cell has no syntax error; else 0."""
    if kinds[fn] != "right":
        return 0
    for cell in release_nb.cells:
        names = re.findall(r"def (\w+)\(", cell.source)
        if fn in names and any(kinds.get(n) == "syntax" for n in names):
            return 0
    return fns[fn][3]


def message_for(fn, kinds, fns, release_nb):
    """What the graded cell of ``fn`` must say: a syntax error in its cell shadows its own kind."""
    for cell in release_nb.cells:
        names = re.findall(r"def (\w+)\(", cell.source)
        if fn in names and any(kinds.get(n) == "syntax" for n in names):
            return SAYS["syntax"]
    return SAYS.get(kinds[fn]) or ANSWERS[fns[fn][0]][kinds[fn]][1]


# --------------------------------------------------------------------------------------
# The loop, once for every chapter
# --------------------------------------------------------------------------------------
def graded_chapters():
    wanted = [c for c in os.environ.get("GRADING_CHAPTERS", "").split(",") if c]
    out = []
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        exercises = se.scan(nbformat.read(path, as_version=4))[0]
        if any(e.checker_cells for e in exercises) and (not wanted or path.stem in wanted):
            out.append(path.stem)
    return out


CHAPTERS = graded_chapters()


def run(args, cwd, log=None):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if log is not None:
        log.append(f"$ {' '.join(str(a) for a in args)}\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    if not NBGRADER.exists():
        pytest.skip("nbgrader is not installed (requirements-dev.txt installs it)")
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", course)
    log, results, tampered = [], {}, []
    for chapter in CHAPTERS:
        assignment.write_source(ROOT / "chapters" / f"{chapter}.ipynb", course)
    run([NBGRADER, "generate_assignment", "*"], course, log)  # every chapter at once
    for chapter in CHAPTERS:
        source = nbformat.read(course / "source" / chapter / f"{chapter}.ipynb", as_version=4)
        release = nbformat.read(course / "release" / chapter / f"{chapter}.ipynb", as_version=4)
        fns = functions(source)
        submissions = plan(fns)
        for j, kinds in enumerate(submissions):
            nb = nbformat.from_dict(json.loads(json.dumps(release)))
            for cell in nb.cells:
                if cell.cell_type == "code" and STUB.search(cell.source):
                    cell.source = answer_cell(cell.source, kinds, source, fns)
                nbg = cell.metadata.get("nbgrader", {})
                if cell.cell_type == "markdown" and nbg.get("solution") and j % 2 == 0:
                    cell.source = f"My answer to {nbg['grade_id']}, in my own words."
                if nbg.get("grade") and cell.cell_type == "code" and any(
                        kinds[f] == "tamper" and fns[f][2] == nbg["grade_id"] for f in kinds):
                    cell.source = "print('passed')  # the check cell itself, emptied"  # nbgrader restores it
                    tampered.append(nbg["grade_id"])
            out = course / "submitted" / f"student{j}" / chapter
            out.mkdir(parents=True)
            nbformat.write(nb, out / f"{chapter}.ipynb")
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        run([NBGRADER, "autograde", chapter], course, log)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        results[chapter] = {"fns": fns, "submissions": submissions, "release": release,
                            "wall": wall / len(submissions), "cpu": cpu / len(submissions)}
    return course, results, "\n".join(log), tampered


def graded_outputs(course, chapter, student):
    """``{grade_id: text of the cell's outputs}`` and every error output of the autograded notebook."""
    nb = nbformat.read(course / "autograded" / student / chapter / f"{chapter}.ipynb", as_version=4)
    texts, errors = {}, []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text = []
        for o in cell.outputs:
            if o.output_type == "error":
                errors.append((cell.metadata.get("nbgrader", {}).get("grade_id"), o))
                text += o.traceback
            else:
                text.append(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")))
        texts[cell.metadata.get("nbgrader", {}).get("grade_id")] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(text))
    return texts, errors


def test_every_answer_gets_the_marks_a_teacher_wants(course):
    from nbgrader.api import Gradebook

    path, results, *_ = course
    wrong, table = [], []
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        for chapter, r in results.items():
            for j, kinds in enumerate(r["submissions"]):
                student = f"student{j}"
                texts, _ = graded_outputs(path, chapter, student)
                for fn, kind in sorted(kinds.items()):
                    checker, _, grade_id, points = r["fns"][fn]
                    score = gb.find_grade(grade_id, chapter, chapter, student).score
                    want = expected_score(fn, kinds, r["fns"], r["release"])
                    table.append(f"  {chapter:26s} {fn:22s} {kind:15s} {score:g} / {points}")
                    if score != want:
                        wrong.append(f"{chapter} {student} {fn} ({kind}): {score} marks, expected {want}\n"
                                     f"{texts.get(grade_id, '')}")
                    says = message_for(fn, kinds, r["fns"], r["release"])
                    if says not in texts.get(grade_id, ""):
                        wrong.append(f"{chapter} {student} {fn} ({kind}): does not say {says!r}:\n"
                                     f"{texts.get(grade_id)}")
    print("\nautograded score per chapter, function and kind of answer:\n" + "\n".join(table))
    assert not wrong, "\n".join(wrong)


def test_messages_are_one_line_never_a_traceback_through_attnlib(course):
    path, results, *_ = course
    bad = []
    for chapter, r in results.items():
        for j in range(len(r["submissions"])):
            _, errors = graded_outputs(path, chapter, f"student{j}")
            for grade_id, o in errors:
                text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(o.traceback))
                if not grade_id or not grade_id.startswith("check-"):  # an answer cell's own error
                    continue
                if "Traceback" in text or 'File "' in text or "---->" in text or len(o.traceback) > 1:
                    bad.append(f"{chapter} student{j} {grade_id}: {o.ename}\n{text[:1500]}")
    assert not bad, "\n\n".join(bad)


def test_released_notebooks_hold_no_answers(course):
    """What students receive: stubs, empty answer cells, the self-checks; no solution, no
    reference answer, no hidden test, no output."""
    path, results, *_ = course
    for chapter in results:
        source = nbformat.read(path / "source" / chapter / f"{chapter}.ipynb", as_version=4)
        release = nbformat.read(path / "release" / chapter / f"{chapter}.ipynb", as_version=4)
        text = "\n".join(c.source for c in release.cells)
        for marker in ("BEGIN HIDDEN TESTS", "hidden_tests(", "BEGIN SOLUTION", "'trials'"):
            assert marker not in text, f"{chapter}: {marker} in the students' copy"
        outside = "\n".join(c.source for c in source.cells if "BEGIN SOLUTION" not in c.source
                            and not c.metadata.get("nbgrader", {}).get("solution"))
        for body in solution_bodies(source).values():
            for line in body.split("\n"):
                assert len(line.strip()) < 20 or line.strip() in outside or line.strip() not in text, \
                    f"{chapter}: solution line in the students' copy: {line}"
        for cell in release.cells:
            nbg = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "markdown" and nbg.get("solution"):
                assert cell.source.strip() == "YOUR ANSWER HERE", f"{chapter}: {nbg['grade_id']} is not blank"
            assert not cell.get("outputs")


def test_autograding_one_submission_is_fast(course):
    _, results, *_ = course
    print("\nautograding, per submission (nbgrader autograde over all of a chapter's submissions):")
    for chapter, r in results.items():
        print(f"  {chapter:26s} {r['wall']:5.1f} s wall, {r['cpu']:5.1f} s CPU "
              f"({len(r['submissions'])} submissions)")
    slow = {c: round(r["cpu"], 1) for c, r in results.items() if r["cpu"] > 30}
    assert not slow, f"autograding takes more than 30 s of CPU per submission: {slow}"


def test_nbgrader_says_nothing_a_teacher_should_worry_about(course):
    """No warning from generate_assignment or autograde, except the one that matters: a student
    changed a locked check cell (the tampering answers empty theirs; nbgrader restores it)."""
    _, _, log, tampered = course
    for noise in ("cannot be converted", "does not understand", "is not absolute", "code cell inside a solution",
                  "Alternative text", "Traceback", "without encryption"):
        assert noise not in log, f"nbgrader's output says {noise!r}:\n{log[log.find(noise) - 2000:][:3000]}"
    warnings = [line for line in log.split("\n") if "warning" in line.lower()]
    expected = [f"Attribute 'checksum' for cell {gid} has changed!" for gid in tampered]
    unexpected = [w for w in warnings if not any(e in w for e in expected)]
    assert not unexpected, "\n".join(unexpected)
    assert len(warnings) == len(tampered), (warnings, tampered)


def test_hand_marks_feedback_and_export(course, capsys):
    """teachers.md's order: autograde, hand-marking (here without a server), feedback, export."""
    path, results, *_ = course
    chapter = next(c for c in results if any(r.metadata.get("nbgrader", {}).get("grade_id", "").endswith("-answer")
                                             for r in results[c]["release"].cells))
    sheet = path / "marks.csv"
    import hand_marks

    def marks(*args):
        hand_marks.main([*map(str, args), "--course", str(path)])
        return capsys.readouterr().out

    marks("sheet", chapter, "--out", sheet)
    with open(sheet) as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["points"] == "" and "My answer" in r["answer"] and r["reference"] for r in rows)
    assert "not marked yet" in marks("status", chapter)
    for r in rows:
        r["points"] = r["max_points"] if r["student"] == "student0" else "0"
        r["comment"] = "Marked by the test."
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert "every written answer is marked" in marks("apply", chapter, sheet)
    said = []
    run([NBGRADER, "generate_feedback", chapter], path, said)
    run([NBGRADER, "export", "--to", "grades.csv"], path, said)
    noise = [line for line in "\n".join(said).split("\n") if "warning" in line.lower() or "Alternative text" in line]
    assert not noise, noise
    feedback = (path / "feedback" / "student0" / chapter / f"{chapter}.html").read_text()
    assert "BEGIN HIDDEN TESTS" not in feedback and "hidden_tests(" not in feedback
    assert "Marked by the test." in feedback
    with open(path / "grades.csv") as f:
        exported = {(r["assignment"], r["student_id"]): float(r["raw_score"]) for r in csv.DictReader(f)}
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{path / 'gradebook.db'}") as gb:
        for (a, s), score in exported.items():
            assert score == gb.find_submission(a, s).score
        manual = sum(float(r["max_points"]) for r in rows if r["student"] == "student0")
        sub = gb.find_submission(chapter, "student0")
        assert sub.score == sub.code_score + manual


# --------------------------------------------------------------------------------------
# The hidden tests against attacks on the grader itself (fast: one process, a fork each)
# --------------------------------------------------------------------------------------
RIGHT_ATTENTION = """
def my_attention(Q, K, V):
    return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1) @ V
"""
GARBAGE_ATTENTION = """
def my_attention(Q, K, V):
    return torch.zeros(Q.shape[0], Q.shape[1], V.shape[2])
"""
#: (what the answer cell does, checker, function, its code, passes?, what the message says)
ATTACKS = [
    ("a right answer (the control)", "check_attention", "my_attention", RIGHT_ATTENTION, True, ""),
    ("a right answer that prints, warns and writes to stderr", "check_attention", "my_attention",
     "import sys, warnings\n" + RIGHT_ATTENTION.replace("    return", "    print('hi'); warnings.warn('w'); "
                                                          "sys.stderr.write('e')\n    return"), True, ""),
    ("torch's comparisons replaced", "check_attention", "my_attention",
     "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
     "torch.testing.assert_close = lambda *a, **k: None\ntorch.Tensor.__eq__ = lambda self, other: True\n"
     + GARBAGE_ATTENTION, False, "wrong values"),
    ("torch's Tensor.tolist replaced", "check_attention", "my_attention",
     "torch.Tensor.tolist = lambda self: [0.0]\n" + GARBAGE_ATTENTION, False, "No marks"),
    ("a tensor that claims to equal anything", "check_attention", "my_attention", """
class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "equal", "__eq__", "isclose"):
            return True
        if getattr(func, "__name__", "") == "tolist":
            return [[[0.0] * 3] * 4] * 2
        return super().__torch_function__(func, types, args, kwargs)

def my_attention(Q, K, V):
    return torch.zeros(Q.shape[0], Q.shape[1], V.shape[2]).as_subclass(Liar)
""", False, "the result"),
    ("Python's built-ins rebound in the notebook", "check_attention", "my_attention",
     "len = lambda x: 0\nabs = lambda x: 0\nisinstance = lambda *a: True\nrange = lambda *a: []\n"
     "zip = lambda *a: []\nall = lambda x: True\nany = lambda x: False\nmax = min = lambda *a, **k: 0\n"
     "float = int = lambda *a: 0\nsum = lambda *a: 0\n" + GARBAGE_ATTENTION, False, "wrong values"),
    ("torch's TensorBase replaced", "check_attention", "my_attention",
     "class TensorBase:\n    tolist = memoryview.tolist\ntorch._C.TensorBase = TensorBase\n" + GARBAGE_ATTENTION,
     False, "could not read results"),
    ("sys.setprofile replaced before the grader runs", "check_attention", "my_attention",
     "import sys\nsys.setprofile = lambda f: None\nfrom attnlib import attention\n"
     "def my_attention(Q, K, V):\n    return attention(Q, K, V)\n", False, "watch"),
    ("the profiler switched off inside the answer", "check_attention", "my_attention", """
import sys
from attnlib import attention

def my_attention(Q, K, V):
    sys.setprofile(None)
    return attention(Q, K, V)
""", False, "grader"),
    ("the library run in a thread", "check_attention", "my_attention", """
import threading
from attnlib import attention

def my_attention(Q, K, V):
    out = []
    t = threading.Thread(target=lambda: out.append(attention(Q, K, V)))
    t.start()
    t.join()
    return out[0]
""", False, "hide what it runs"),
    ("the hidden values read from the grader's frame", "check_attention", "my_attention", """
import sys

def my_attention(Q, K, V):
    frame = sys._getframe(1)
    return torch.zeros(Q.shape[0], Q.shape[1], V.shape[2])
""", False, "`_getframe`"),
    ("... through a traceback, in a helper", "check_attention", "my_attention", """
def helper():
    try:
        1 / 0
    except ZeroDivisionError as e:
        return e.__traceback__.tb_frame.f_back

def my_attention(Q, K, V):
    helper()
    return torch.zeros(Q.shape[0], Q.shape[1], V.shape[2])
""", False, "reads or rewires"),
    ("... through the garbage collector", "check_attention", "my_attention",
     "import gc\ndef my_attention(Q, K, V):\n    gc.get_objects()\n    return V\n", False, "`gc`"),
    ("the grader's function redefined", "check_attention", "my_attention",
     "def hidden_tests(*a, **k):\n    pass\n" + GARBAGE_ATTENTION, False, "wrong values"),
    ("the library's function under the answer's name", "check_attention", "my_attention",
     "import attnlib\nmy_attention = attnlib.attention\n", False, "library's function"),
    ("a partial of the library's function", "check_split_heads", "my_split_heads",
     "import functools, attnlib\nmy_split_heads = functools.partial(attnlib.split_heads)\n", False,
     "written with `def`"),
    ("SystemExit raised", "check_attention", "my_attention",
     "def my_attention(Q, K, V):\n    raise SystemExit(0)\n", False, "raised SystemExit"),
] + [(f"torch's own implementation ({checker})", checker, fn, f"def {fn}({args}):\n" + "\n".join(
        "    " + line for line in ANSWERS[checker]["shortcut-torch"][0].split("\n")) + "\n", False,
      ANSWERS[checker]["shortcut-torch"][1])
     for checker, fn, args in [("check_attention", "my_attention", "Q, K, V"),
                               ("check_mha_from_heads", "my_mha", "x, mha"),
                               ("check_attention_pooling", "my_attention_pool", "x, q")]]

DRIVER = """
import inspect, json, os, sys
sys.path.insert(0, sys.argv[1])
import torch, math
import hidden, references
results = []
for name, checker, fn, code in json.loads(sys.stdin.read()):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a fresh copy of this process for each attack: its patches die with it
        os.close(r)
        ns = {"__name__": "__main__", "torch": torch, "math": math}
        try:
            exec(compile(code, "/tmp/ipykernel_0/answer.py", "exec"), ns)
            call = f"hidden_tests({name!r}, [{references.part(checker, fn)!r}], time_limit=1.0)"
            exec(compile(inspect.getsource(hidden.hidden_tests) + "\\n" + call, "/tmp/ipykernel_0/graded.py", "exec"), ns)
            out = [True, ""]
        except BaseException as e:
            out = [False, str(e.args[0]) if e.args else repr(e)]
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    results.append(json.loads(data) if data else [False, "the attack killed the process"])
print(json.dumps(results))
"""


def test_attacks_on_the_grader_earn_nothing():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT / "grading")], env=env, text=True,
                          capture_output=True, timeout=300,
                          input=json.dumps([(a[0], a[1], a[2], a[3]) for a in ATTACKS]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    wrong = []
    for (name, _, _, _, passes, says), (passed, message) in zip(ATTACKS, json.loads(proc.stdout.splitlines()[-1])):
        print(f"  {'full marks' if passed else '0':10s} {name}: {message[:150]}")
        if passed != passes or says not in message:
            wrong.append(f"{name}: passed={passed}, expected {passes}; message: {message}")
    assert not wrong, "\n".join(wrong)
