"""Check and run UI-format workflow files without ComfyUI.

A UI-format workflow (what the frontend saves and what workflows/ ships) has
``nodes`` (id, type, inputs, outputs, widgets_values) and ``links``
``[id, from_node, from_slot, to_node, to_slot, type]``. Widget values are
positional, in the order of the node's widget inputs; a seed widget with
``control_after_generate`` takes two slots (value, control mode).

- :func:`validate_workflow` lists what would stop ComfyUI from loading or
  queueing the file (unknown node types, links whose types do not match,
  widget values outside their widget's range or options).
- :func:`run_workflow` executes the Harmony nodes of a workflow on this
  machine, in graph order, and records the inputs that reach core nodes
  (which it does not run), so a test can check they are what core expects.

``python tests/workflow_runner.py workflows/harmony_t2av.json`` runs one file. Test tooling:
it lives beside the tests, not in the node package (the repository root must be importable).
"""
from __future__ import annotations

import json
import sys
import time

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")

KNOWN_CORE_NODES = {
    # type: (inputs [(name, type, options, optional)], outputs [type]) as ComfyUI 0.3.64 declares them
    "CreateVideo": ([("images", "IMAGE", {}, False),
                     ("fps", "FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0}, False),
                     ("audio", "AUDIO", {}, True)], ["VIDEO"]),
    "SaveVideo": ([("video", "VIDEO", {}, False),
                   ("filename_prefix", "STRING", {"default": "video/ComfyUI"}, False),
                   ("format", ["auto", "mp4"], {"default": "auto"}, False),
                   ("codec", ["auto", "h264"], {"default": "auto"}, False)], []),
    "GetVideoComponents": ([("video", "VIDEO", {}, False)], ["IMAGE", "AUDIO", "FLOAT"]),
    "PreviewAudio": ([("audio", "AUDIO", {}, False)], []),
    "SaveAudio": ([("audio", "AUDIO", {}, False),
                   ("filename_prefix", "STRING", {"default": "audio/ComfyUI"}, False)], []),
    "PreviewImage": ([("images", "IMAGE", {}, False)], []),
    # a frontend-only node (never sent to the server): the templates' one-line description
    "Note": ([("text", "STRING", {"multiline": True, "default": ""}, False)], []),
}
"""Core nodes the templates may use, with the declarations needed to check links and widgets."""


# ------------------------------------------------------------------ definitions


def node_definitions() -> dict:
    """type -> {"inputs": [(name, type, options, optional)], "outputs": [type], "ours": bool}."""
    from nodes import NODE_CLASS_MAPPINGS

    defs = {}
    for name, cls in NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        inputs = []
        for section, optional in (("required", False), ("optional", True)):
            for inp, decl in spec.get(section, {}).items():
                options = decl[1] if len(decl) > 1 else {}
                inputs.append((inp, decl[0], options, optional))
        defs[name] = {"inputs": inputs, "outputs": list(cls.RETURN_TYPES), "ours": True}
    for name, (inputs, outputs) in KNOWN_CORE_NODES.items():
        defs[name] = {"inputs": inputs, "outputs": outputs, "ours": False}
    return defs


def is_widget(input_type, options: dict) -> bool:
    if options.get("forceInput"):
        return False
    return isinstance(input_type, list) or input_type in WIDGET_TYPES


def widget_inputs(defn: dict) -> list:
    """(name, type, options, slots) of each widget, in widgets_values order."""
    out = []
    for name, typ, options, _ in defn["inputs"]:
        if is_widget(typ, options):
            slots = 2 if (typ == "INT" and options.get("control_after_generate")) else 1
            out.append((name, typ, options, slots))
    return out


def widget_values(node: dict, defn: dict) -> dict:
    """Map a node's positional widgets_values to {input name: value}."""
    values, pos = {}, 0
    raw = node.get("widgets_values") or []
    for name, _, _, slots in widget_inputs(defn):
        if pos < len(raw):
            values[name] = raw[pos]
        pos += slots
    return values


def _check_widget(name, typ, options, value) -> str | None:
    if isinstance(typ, list):
        return None if value in typ else f"{name}={value!r} is not one of {typ}"
    if typ == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}={value!r} is not a boolean"
    if typ == "STRING":
        return None if isinstance(value, str) else f"{name}={value!r} is not a string"
    if typ == "INT" and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{name}={value!r} is not an integer"
    if typ == "FLOAT" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return f"{name}={value!r} is not a number"
    lo, hi = options.get("min"), options.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"{name}={value!r} is outside [{lo}, {hi}]"
    return None


# -------------------------------------------------------------------- validate


def validate_workflow(wf: dict) -> list[str]:
    """Problems that would stop the workflow from loading or queueing (empty list: none)."""
    problems = []
    defs = node_definitions()
    if not isinstance(wf.get("nodes"), list) or not isinstance(wf.get("links"), list):
        return ["not a UI-format workflow: 'nodes' and 'links' lists are required"]
    nodes = {n["id"]: n for n in wf["nodes"]}
    for n in wf["nodes"]:
        defn = defs.get(n["type"])
        if defn is None:
            problems.append(f"node {n['id']}: type {n['type']!r} is neither a Harmony node nor a known core node")
            continue
        widgets = widget_inputs(defn)
        want = sum(s for *_, s in widgets)
        got = len(n.get("widgets_values") or [])
        if got != want:
            problems.append(f"node {n['id']} ({n['type']}): {got} widget values, expected {want} "
                            f"({[w[0] for w in widgets]}, seed counted twice)")
        for name, typ, options, slots in widgets:
            value = widget_values(n, defn).get(name)
            err = _check_widget(name, typ, options, value)
            if err:
                problems.append(f"node {n['id']} ({n['type']}): {err}")
            if slots == 2:
                idx = [w[0] for w in widgets].index(name)
                mode = (n.get("widgets_values") or [None] * (idx + 2))[sum(w[3] for w in widgets[:idx]) + 1]
                if mode not in ("fixed", "increment", "decrement", "randomize"):
                    problems.append(f"node {n['id']}: seed control mode {mode!r} is not fixed/increment/decrement/randomize")
        names = [i[0] for i in defn["inputs"]]
        for slot in n.get("inputs", []):
            if slot["name"] not in names:
                problems.append(f"node {n['id']} ({n['type']}): input {slot['name']!r} is not declared")
        required = [i[0] for i in defn["inputs"] if not i[3] and not is_widget(i[1], i[2])]
        linked = {s["name"] for s in n.get("inputs", []) if s.get("link") is not None}
        for name in required:
            if name not in linked:
                problems.append(f"node {n['id']} ({n['type']}): required input {name!r} is not connected")
    for link in wf["links"]:
        lid, src, src_slot, dst, dst_slot, typ = link[:6]
        if src not in nodes or dst not in nodes:
            problems.append(f"link {lid}: node {src if src not in nodes else dst} does not exist")
            continue
        sdef, ddef = defs.get(nodes[src]["type"]), defs.get(nodes[dst]["type"])
        if sdef is None or ddef is None:
            continue
        out_type = sdef["outputs"][src_slot] if src_slot < len(sdef["outputs"]) else None
        dst_inputs = nodes[dst].get("inputs", [])
        if dst_slot >= len(dst_inputs):
            problems.append(f"link {lid}: node {dst} has no input slot {dst_slot}")
            continue
        dst_name = dst_inputs[dst_slot]["name"]
        decl = {i[0]: i[1] for i in ddef["inputs"]}.get(dst_name)
        if dst_inputs[dst_slot].get("link") != lid:
            problems.append(f"link {lid}: node {dst} input {dst_name!r} does not point back to it")
        if lid not in (nodes[src]["outputs"][src_slot].get("links") or []):
            problems.append(f"link {lid}: node {src} output {src_slot} does not list it")
        if out_type is None or decl is None or out_type != decl or typ != out_type:
            problems.append(f"link {lid}: {nodes[src]['type']} output {src_slot} ({out_type}) -> "
                            f"{nodes[dst]['type']}.{dst_name} ({decl}), link says {typ}")
    return problems


# ------------------------------------------------------------------------- run


def run_workflow(wf: dict, log=print) -> dict:
    """Run the Harmony nodes of ``wf`` in graph order (core nodes are not run).

    Returns {"outputs": {node id: outputs}, "core_inputs": {node id: {input: value}},
    "ui": {node id: UI message}, "seconds": {node id: run time}}.
    """
    from nodes import NODE_CLASS_MAPPINGS

    problems = validate_workflow(wf)
    if problems:
        raise ValueError("workflow does not validate:\n  " + "\n  ".join(problems))
    defs = node_definitions()
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {link[0]: link for link in wf["links"]}
    outputs, core_inputs, ui, seconds = {}, {}, {}, {}
    pending = [n for n in sorted(nodes) if nodes[n].get("mode", 0) == 0]
    while pending:
        ready = [i for i in pending if all(
            links[s["link"]][1] in outputs or nodes[links[s["link"]][1]]["type"] not in NODE_CLASS_MAPPINGS
            for s in nodes[i].get("inputs", []) if s.get("link") is not None)]
        if not ready:
            raise ValueError(f"workflow has a cycle among nodes {pending}")
        for i in ready:
            pending.remove(i)
            n, defn = nodes[i], defs[nodes[i]["type"]]
            kwargs = widget_values(n, defn)
            for s in n.get("inputs", []):
                if s.get("link") is not None:
                    _, src, slot = links[s["link"]][:3]
                    kwargs[s["name"]] = outputs[src][slot] if src in outputs else None
            if not defn["ours"]:
                core_inputs[i] = kwargs
                continue
            cls = NODE_CLASS_MAPPINGS[n["type"]]
            if "hidden" in cls.INPUT_TYPES():
                kwargs.update(prompt=None, extra_pnginfo={"workflow": wf})
            start = time.perf_counter()
            result = getattr(cls(), cls.FUNCTION)(**kwargs)
            seconds[i] = time.perf_counter() - start
            log(f"[{i}] {n['type']}: {seconds[i]:.2f} s")
            if isinstance(result, dict):  # {"ui": ..., "result": ...}
                ui[i] = result.get("ui")
                result = result.get("result") or ()
            outputs[i] = result
    return {"outputs": outputs, "core_inputs": core_inputs, "ui": ui, "seconds": seconds}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for path in argv:
        with open(path, encoding="utf-8") as f:
            wf = json.load(f)
        start = time.perf_counter()
        run_workflow(wf)
        print(f"{path}: our nodes ran in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    import os
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
    sys.exit(main())
