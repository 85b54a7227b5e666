#!/usr/bin/env python3
"""Extract self-contained JSON Schemas (draft 2020-12) from OpenAI's OpenAPI spec.

Usage:
    python extract.py [--defs] PATH/TO/openapi.yaml|openapi.json [OUT_DIR] [SCHEMA_NAME ...]

OUT_DIR defaults to the directory of this script. Without SCHEMA_NAMEs the
default set used by the Hermes integration tests is extracted.

What it does, per schema:
  * resolves every local "$ref" (#/components/schemas/...) recursively and
    inlines it; a $ref that would recurse into itself is instead emitted under
    "$defs" and referenced as "#/$defs/<Name>" (none of the default schemas
    need this, but the script stays correct if the spec grows a cycle);
  * $ref siblings: pure annotations (description/title/default/...) are merged
    into the inlined schema; anything else becomes {"allOf": [target], ...};
  * OpenAPI 3.0 leftovers: `nullable: true` -> "null" added to `type` (or the
    schema is wrapped in anyOf [..., {"type": "null"}] when it has no `type`);
    an `enum` then also gets null;
  * drops every `x-*` key, `example`, `discriminator` (OpenAPI-only, and
    `propertyName` inside it would otherwise be meaningless), `xml`,
    `externalDocs`; `examples` and `deprecated` are valid 2020-12 and kept
    (`examples` only if it is a list);
  * adds "$schema" and "title".
"""
import json
import os
import sys

DEFAULT_NAMES = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateEmbeddingResponse",
    "ErrorResponse",
    "ListModelsResponse",
]

# $recursiveAnchor: 2019-09 only (with $ref kept by reference it is not needed).
DROP_KEYS = {"example", "discriminator", "xml", "externalDocs", "nullable", "$recursiveAnchor"}
ANNOTATION_KEYS = {"description", "title", "default", "deprecated", "examples",
                   "readOnly", "writeOnly", "$comment"}
REF_PREFIX = "#/components/schemas/"


def load_spec(path):
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    import yaml  # pip install pyyaml

    class Loader(yaml.SafeLoader):
        pass

    # Keep YAML timestamps/dates as plain strings (JSON has no date type).
    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)


class Extractor:
    def __init__(self, components, by_reference=False):
        self.components = components
        self.by_reference = by_reference
        self.defs = {}

    def target(self, ref):
        if not ref.startswith(REF_PREFIX):
            raise ValueError("unsupported $ref %r" % ref)
        name = ref[len(REF_PREFIX):]
        if name not in self.components:
            raise KeyError("unknown schema %r" % name)
        return name

    def convert(self, node, stack):
        if isinstance(node, list):
            return [self.convert(v, stack) for v in node]
        if not isinstance(node, dict):
            return node

        if "$ref" in node:
            name = self.target(node["$ref"])
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if name in stack or self.by_reference:  # recursion (or asked): a $defs reference
                if name not in self.defs:
                    self.defs[name] = None  # placeholder against re-entry
                    self.defs[name] = self.convert(self.components[name], stack + [name])
                resolved = {"$ref": "#/$defs/" + name}
            else:
                resolved = self.convert(self.components[name], stack + [name])
            nullable = siblings.pop("nullable", False) is True
            sib = self.convert(siblings, stack)
            if nullable:  # {"$ref": X, "nullable": true} -> X or null
                resolved = {"anyOf": [resolved, {"type": "null"}]}
            if not sib:
                return resolved
            if set(sib) <= ANNOTATION_KEYS:  # (2020-12 allows $ref siblings)
                merged = dict(resolved)
                merged.update(sib)
                return merged
            out = {"allOf": [resolved]}
            out.update(sib)
            return out

        out = {}
        for k, v in node.items():
            if k.startswith("x-") or k in DROP_KEYS:
                continue
            if k == "examples" and not isinstance(v, list):
                continue
            if k in ("default", "const", "enum", "examples"):
                out[k] = v  # literal values, not schemas
            elif k in ("properties", "patternProperties", "$defs", "definitions",
                     "dependentSchemas"):
                # keys of these maps are names, not keywords: keep them all
                out[k] = {pk: self.convert(pv, stack) for pk, pv in v.items()}
            else:
                out[k] = self.convert(v, stack)

        if node.get("nullable") is True:
            t = out.get("type")
            if t is None:
                out = {"anyOf": [out, {"type": "null"}]}
            else:
                types = t if isinstance(t, list) else [t]
                if "null" not in types:
                    out["type"] = types + ["null"]
                if "enum" in out and None not in out["enum"]:
                    out["enum"] = out["enum"] + [None]
        return out

    def extract(self, name):
        self.defs = {}
        schema = self.convert(self.components[name], [name])
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": name}
        doc.update(schema)
        if self.defs:
            doc["$defs"] = self.defs
        return doc


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    # --defs: every referenced schema once under $defs instead of inlined at each use (the
    # Responses schemas reference the same items hundreds of times: 9 MB inlined, far less so).
    by_reference = "--defs" in argv
    argv = [a for a in argv if a != "--defs"]
    spec = load_spec(argv[1])
    out_dir = argv[2] if len(argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    names = argv[3:] or DEFAULT_NAMES
    ex = Extractor(spec["components"]["schemas"], by_reference)
    for name in names:
        doc = ex.extract(name)
        path = os.path.join(out_dir, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
