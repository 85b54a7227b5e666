#!/usr/bin/env python3
"""Rewrites policies/classify.toml without repeated phrases and, given --train FILE..., without
phrases that match exactly one training prompt (a fragment that fits one prompt teaches nothing).
Matching is the classifier's: ASCII case-insensitive, on word boundaries, in the last user turn.
Run by hand after the corpus changes; tests/classify_accuracy.rs checks the result."""
import json, re, sys, tomllib

JOBS = ['code_generation', 'analysis', 'content_creation', 'research', 'reasoning', 'general']
path = 'policies/classify.toml'
text = open(path).read()
vocab = tomllib.loads(text)
header = text[:text.index('\n[code_generation]') + 1]

def last_user(line):
    row = json.loads(line)
    if 'prompt' in row:
        return row['prompt']
    msgs = [m for m in row['messages'] if m.get('role') == 'user']
    c = msgs[-1].get('content') if msgs else ''
    if isinstance(c, list):
        c = '\n'.join(p.get('text', '') for p in c if isinstance(p, dict))
    return c or ''

def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h

train = []
if '--train' in sys.argv:
    for f in sys.argv[sys.argv.index('--train') + 1:]:
        for line in open(f):
            if line.strip():
                t = last_user(line)
                if 'tuned' in f or fnv1a(t) % 5 != 0:
                    train.append(t.lower())

def matches(phrase):
    pat = re.compile(r'(?<![A-Za-z0-9])' + re.escape(phrase.lower()) + r'(?![A-Za-z0-9])')
    return sum(1 for t in train if pat.search(t))

seen = set()
dropped = []
out = header
for job in JOBS:
    out += f'[{job}]\n'
    for tier in ['strong', 'weak']:
        keep = []
        for p in vocab[job][tier]:
            k = p.strip().lower()
            if k in seen or not k:
                dropped.append((p, 'repeat'))
                continue
            if train and matches(k) == 1:
                dropped.append((p, 'fits one training prompt'))
                continue
            seen.add(k)
            keep.append(p)
        out += f'{tier} = [\n' + ''.join(f'  {json.dumps(p, ensure_ascii=False)},\n' for p in keep) + ']\n'
    out += '\n'
out += text[text.index('\n[needs]') + 1:]
open(path, 'w').write(out)
for p, why in dropped:
    print(f'dropped {p!r}: {why}')
print(f'{len(dropped)} dropped')
