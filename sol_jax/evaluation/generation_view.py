"""Showing a generated continuation with each token's compute level (issue 11 item 4).

A token's compute is the net keep of its executed action, (κ + ρ + b/16) / 3
(method §7; 1.0 for dense). `LEVELS` buckets it for the terminal: ANSI
background colours on a TTY, or `text[level]` with a legend in plain text.
`html_page` colours each token's span continuously by its net compute, with the
action and log-probability in the span's tooltip and the budgets in the title.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

from sol_jax.evaluation.generate import Continuation, Generation

# Upper bounds of the compute buckets (net keep), lowest compute first.
LEVELS = (0.5, 0.65, 0.8, 0.999, np.inf)
LEVEL_NAMES = ("< 0.50", "0.50-0.65", "0.65-0.80", "0.80-1.00", "dense (1.00)")
# xterm-256 backgrounds: red, orange, yellow, light green, none (dense is left plain).
ANSI_BG = (160, 208, 220, 150, None)


def net_compute(sample: Continuation) -> np.ndarray:
  """Per-token net keep (κ + ρ + b/16) / 3 of the executed actions."""
  return (sample.kappa + sample.rho + sample.bits / 16.0) / 3.0


def compute_levels(sample: Continuation) -> np.ndarray:
  """Per-token bucket index into LEVELS (0: least compute)."""
  return np.searchsorted(np.asarray(LEVELS), net_compute(sample), side="left")


def token_pieces(tokenizer, sample: Continuation) -> list[str]:
  """The text each token adds (decoding prefixes, so merged bytes land on one token).

  Cut to the continuation's `text` (a stop string and EOS are not shown).
  """
  pieces, done = [], ""
  for i in range(1, len(sample.tokens) + 1):
    text = tokenizer.decode(np.asarray(sample.tokens[:i]).tolist())
    pieces.append(text[len(done) :] if text.startswith(done) else text)
    done = text
  out, left = [], len(sample.text)
  for piece in pieces:
    out.append(piece[: max(left, 0)])
    left -= len(piece)
  return out


def budget_line(budgets: dict) -> str:
  return (
    f"realized kappa {budgets['avg_keep_effective']:.3f}  rho {budgets['avg_prune_keep']:.3f}  "
    f"eta {budgets['avg_quant_ratio']:.3f}  net keep {budgets['net_keep']:.3f}  "
    f"({int(budgets['effective_steps'])} effective steps)"
  )


def legend(color: bool) -> str:
  if color:
    cells = [
      (f"\x1b[48;5;{bg}m" if bg is not None else "") + f" {name} " + "\x1b[0m"
      for bg, name in zip(ANSI_BG, LEVEL_NAMES)
    ]
    return "net compute per token: " + " ".join(cells)
  return "net compute per token: " + ", ".join(f"[{i}] {n}" for i, n in enumerate(LEVEL_NAMES))


def render_text(tokenizer, sample: Continuation, color: bool) -> str:
  """The continuation with each token's compute level: ANSI colours, or `piece[level]`."""
  out = []
  for piece, level in zip(token_pieces(tokenizer, sample), compute_levels(sample)):
    if not piece:
      continue
    if color:
      bg = ANSI_BG[level]
      out.append(piece if bg is None else f"\x1b[48;5;{bg}m{piece}\x1b[0m")
    else:
      out.append(f"{piece}[{level}]")
  return "".join(out)


def render_generations(tokenizer, generations: Sequence[Generation], color: bool) -> str:
  lines = [legend(color)]
  for g in generations:
    lines += ["", f"prompt: {g.prompt}"]
    for i, s in enumerate(g.samples):
      head = f"sample {i} " if len(g.samples) > 1 else ""
      lines.append(f"{head}[{s.stop_reason}, {len(s.tokens)} tokens]")
      lines.append(g.prompt + render_text(tokenizer, s, color))
      lines.append(budget_line(s.budgets))
    if len(g.samples) > 1:
      lines.append("pooled: " + budget_line(g.budgets))
  return "\n".join(lines)


def _hsl(compute: float) -> str:
  """Red (no compute) through yellow to green (dense), light enough for black text."""
  return f"hsl({120.0 * min(max(compute, 0.0), 1.0):.0f}, 80%, 80%)"


def html_page(tokenizer, generations: Sequence[Generation], space, title: str) -> str:
  """A standalone HTML page: per-token spans coloured by net compute, budgets in the title."""
  esc = html.escape
  body = []
  for g in generations:
    for i, s in enumerate(g.samples):
      spans = []
      levels = net_compute(s)
      for j, piece in enumerate(token_pieces(tokenizer, s)):
        if not piece:
          continue
        a = int(s.actions[j])
        tag = "dense" if a < 0 else space.tags[a]
        tip = (
          f"{tag}: kappa {s.kappa[j]:.2f}, rho {s.rho[j]:.2f}, bits {int(s.bits[j])}, "
          f"net {levels[j]:.3f}, log p {s.logprobs[j]:.3f}"
          + ("" if s.effective[j] else " (not effective: forced dense)")
        )
        spans.append(
          f'<span style="background:{_hsl(float(levels[j]))}" title="{esc(tip)}">{esc(piece)}</span>'
        )
      name = f" (sample {i})" if len(g.samples) > 1 else ""
      body.append(
        f"<h3>{esc(budget_line(s.budgets))}{esc(name)}</h3>"
        f'<p class="gen"><span class="prompt">{esc(g.prompt)}</span>{"".join(spans)}</p>'
      )
  scale = "".join(
    f'<span style="background:{_hsl(v)}">&nbsp;{v:.1f}&nbsp;</span>' for v in np.linspace(0, 1, 6)
  )
  return (
    "<!doctype html><html><head><meta charset='utf-8'>"
    f"<title>{esc(title)}</title><style>"
    "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
    ".gen{font-family:monospace;white-space:pre-wrap;line-height:1.6}"
    ".prompt{color:#666}</style></head><body>"
    f"<h2>{esc(title)}</h2><p>net compute per token (hover a token for its action): {scale}</p>"
    + "".join(body)
    + "</body></html>\n"
  )
