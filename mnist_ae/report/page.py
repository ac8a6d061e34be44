"""One self-contained HTML file: plotly.js inlined, figures as JSON, images as data URLs, and a few
lines of glue (the step slider, the hover thumbnail, sortable tables). It opens from disk with no network.

plotly.js comes as two bundles built with only the traces the report draws (`tools/plotly/build.sh`),
gzipped and unpacked by the browser's own DecompressionStream: the 2-D one (1.6 MB) is evaluated when
the page opens, the one with the 3-D scatter (2.1 MB) only when a 3-D map comes near the screen.
Evaluating the full plotly.js (4.8 MB) took most of the page's opening time.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_ae import render

FULL_SIZE_THUMBS = 5000
BUNDLES = Path(__file__).parent / "plotly_js"
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1180px;padding:0 16px 40px;color:#222}
h1{margin:18px 0 4px}h2{border-bottom:2px solid #ddd;padding-top:14px}h3{margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f4f4f4;cursor:default}td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer}tr.changed td{background:#fff4d6}td.differs{background:#fff4d6}
td.best{font-weight:bold;background:#dff5df}.note{color:#666;font-size:12px}.grid{display:flex;gap:16px;
flex-wrap:wrap;align-items:flex-start}.grid>div{flex:1 1 460px;min-width:0}img{image-rendering:pixelated;
max-width:100%}.thumbs figure{display:inline-block;margin:2px;text-align:center;font-size:11px}
.thumbs img{width:56px}#hover-thumb{position:fixed;pointer-events:none;display:none;width:84px;height:84px;
border:1px solid #888;background-color:#000;image-rendering:pixelated;z-index:10}
.headline{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0}.headline div{border:1px solid #ddd;
border-radius:6px;padding:6px 12px;background:#fafafa}.headline b{display:block;font-size:20px}
.headline span{color:#666;font-size:12px}.wide{overflow-x:auto}.recon{width:100%;max-width:560px}.slider{display:flex;gap:12px;align-items:center;margin:8px 0}.slider input{flex:1}details{margin:6px 0}
"""

# Glue only: unpack the 2-D plotly.js bundle (the 3-D one when a 3-D map needs it), draw each figure
# from its JSON when it comes near the screen (a page of many maps opens fast; `drawAll()` draws the
# rest at once), wire the sliders, the hover thumbnails (one sprite per page, positioned by the
# point's row) and the sortable tables.
GLUE = """
async function unpack(id){
  const b64=document.getElementById(id).textContent;
  const bytes=Uint8Array.fromBase64?Uint8Array.fromBase64(b64):Uint8Array.from(atob(b64),c=>c.charCodeAt(0));
  const code=await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text();
  const s=document.createElement('script');s.text=code;document.head.appendChild(s);
}
const libs={};
function lib(name){return libs[name]??=unpack('plotly-'+name).then(()=>name==='3d'?Plotly3d:Plotly);}
function libOf(div){return lib(div.dataset.lib||'2d');}
const drawn=new Map(),queue=new Map();
const TEMPLATE=JSON.parse(document.getElementById('plotly-template').textContent);  // every figure's look
function later(div,step){const p=(queue.get(div)||Promise.resolve()).then(step);queue.set(div,p);return p;}
// A browser keeps about 16 WebGL contexts and blanks the oldest beyond that (a 2-D WebGL map holds two):
// at most GL_LIVE WebGL figures are drawn at once. Drawing another first releases the ones farthest from
// the screen (Plotly.purge, their contexts lost) and waits for that; a released figure is drawn again when
// it comes near. A cap, not a distance: however fast the reader scrolls, the count never passes it.
const GL_LIVE=6;
function draw(div){
  if(!drawn.has(div)){
    const f=JSON.parse(document.querySelector('script.fig[data-target="'+div.id+'"]').textContent);
    f.layout.template=TEMPLATE;
    const room=div.dataset.gl?makeRoom():null;
    drawn.set(div,later(div,()=>Promise.resolve(room).then(()=>libOf(div)).then(P=>P.newPlot(div,f.data,f.layout,{displaylogo:false,responsive:true})).then(()=>{
      if(div.dataset.sprite){div.on('plotly_hover',ev=>showThumb(ev,div));
        div.on('plotly_unhover',()=>{document.getElementById('hover-thumb').style.display='none';});}
      const slider=document.querySelector('.slider[data-map="'+div.id+'"] input');  // redrawn: back to its step
      if(slider&&slider.value!==slider.max)slider.dispatchEvent(new Event('input'));
    })));
  }
  return drawn.get(div);
}
function makeRoom(){
  const live=[...drawn.keys()].filter(d=>d.dataset.gl);
  const away=d=>Math.abs(d.getBoundingClientRect().top+d.offsetHeight/2-innerHeight/2);
  return Promise.all(live.sort((a,b)=>away(b)-away(a)).slice(0,Math.max(0,live.length-GL_LIVE+1)).map(release));
}
function release(div){
  drawn.delete(div);
  return later(div,()=>libOf(div).then(P=>{
    // the 2-D WebGL canvases only (a 3-D scene loses its own context in purge): asking another canvas
    // for a context would create one
    const gl=[...div.querySelectorAll('canvas.gl-canvas')].map(c=>c.getContext('webgl2')||c.getContext('webgl'));
    P.purge(div);  // purge leaves the contexts to the garbage collector, which may come too late: lose them now
    gl.forEach(g=>g&&g.getExtension('WEBGL_lose_context')?.loseContext());
  }));
}
function drawAll(){return Promise.all([...document.querySelectorAll('.plot')].map(draw));}
function showThumb(ev,div){
  const t=document.getElementById('hover-thumb'),p=ev.points[0],row=p.customdata&&p.customdata[0];
  if(row===undefined||row===null||!ev.event)return;const cols=+div.dataset.cols,s=84;
  t.style.backgroundImage='url('+document.getElementById(div.dataset.sprite).src+')';
  t.style.backgroundSize=(cols*s)+'px';t.style.backgroundPosition=(-(row%cols)*s)+'px '+(-Math.floor(row/cols)*s)+'px';
  t.style.left=(ev.event.clientX+14)+'px';t.style.top=(ev.event.clientY+14)+'px';t.style.display='block';
}
function wireSlider(el){
  const d=JSON.parse(document.getElementById(el.dataset.src).textContent),input=el.querySelector('input');
  const label=el.querySelector('.step'),img=document.getElementById(el.dataset.img),map=document.getElementById(el.dataset.map);
  input.addEventListener('input',async()=>{
    const i=+input.value;label.textContent='step '+d.steps[i];
    if(img&&d.images[i])img.src=d.images[i];
    if(map&&d.frames[i]){const f=d.frames[i];await draw(map);
      await (await libOf(map)).restyle(map,{x:f.map(c=>c[0]),y:f.map(c=>c[1])},f.map((_,k)=>k));}
    el.dataset.shown=d.steps[i];
  });
}
function sortTable(th){
  const table=th.closest('table'),col=[...th.parentNode.children].indexOf(th),body=table.tBodies[0];
  const dir=th.dataset.dir==='asc'?-1:1;th.dataset.dir=dir===1?'asc':'desc';
  const key=r=>{const t=r.children[col].dataset.v??r.children[col].textContent;const n=parseFloat(t);return isNaN(n)?t:n;};
  [...body.rows].sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*dir;}).forEach(r=>body.appendChild(r));
}
(async()=>{
  await lib('2d');
  document.querySelectorAll('.slider').forEach(wireSlider);
  document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>sortTable(th)));
  const plots=[...document.querySelectorAll('.plot')],near=innerHeight+300;
  await Promise.all(plots.filter(d=>d.getBoundingClientRect().top<near).map(draw));
  const io=new IntersectionObserver(es=>es.forEach(e=>{if(e.isIntersecting)draw(e.target);}),{rootMargin:'300px'});
  plots.forEach(d=>io.observe(d));
  document.body.dataset.ready='1';
  if(document.querySelector('[data-lib="3d"]'))setTimeout(()=>lib('3d'),500);  // before the reader scrolls to it
})();
"""


@functools.cache
def template_json() -> str:
    """plotly's "plotly_white" template, which the glue draws every figure of a page with (`figures.BARE`)."""
    import plotly.io as pio  # noqa: PLC0415
    from plotly.utils import PlotlyJSONEncoder  # noqa: PLC0415

    return json.dumps(pio.templates["plotly_white"].to_plotly_json(), cls=PlotlyJSONEncoder, separators=(",", ":"))


@functools.cache
def plotly_b64(bundle: str) -> str:
    """The gzipped plotly.js bundle `bundle` ("2d" or "3d") shipped in plotly_js/, base64-encoded."""
    return base64.b64encode((BUNDLES / f"plotly-{bundle}.min.js.gz").read_bytes()).decode()


def esc(value: Any) -> str:
    return html.escape(str(value))


def png_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def array_png(image_hwc: np.ndarray) -> bytes:
    """PNG bytes at zlib's default level: the 2,000-digit sprite took 0.67 s with `optimize` (its best
    level) and takes 0.06 s, 3.5% larger (325 KiB against 314)."""
    buffer = io.BytesIO()
    render.to_pil(render.hwc_uint8(image_hwc)).save(buffer, format="PNG")
    return buffer.getvalue()


def img(png: bytes, alt: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
    return f'<img src="{png_url(png)}" alt="{esc(alt)}"{extra}>'


def json_script(element_id: str, value: Any, css_class: str = "", target: str = "") -> str:
    """JSON data in the page (a figure names the div it is drawn into as `target`)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    klass = (f' class="{css_class}"' if css_class else "") + (f' data-target="{target}"' if target else "")
    safe = text.replace("</", "<\\/")  # a "</script>" inside the JSON must not end the element
    return f'<script type="application/json" id="{element_id}"{klass}>{safe}</script>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, sortable: bool = False,
          cell_class: dict[tuple[int, int], str] | None = None, row_class: dict[int, str] | None = None) -> str:
    """An HTML table; numbers are shown with 4 significant digits (the raw value kept for sorting)."""
    cell_class, row_class = cell_class or {}, row_class or {}

    def cell(r: int, c: int, value: Any) -> str:
        klass = f' class="{cell_class[(r, c)]}"' if (r, c) in cell_class else ""
        if isinstance(value, float):
            return f'<td{klass} data-v="{value!r}">{value:.4g}</td>'
        return f"<td{klass}>{esc(value)}</td>"

    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(f'<tr{f" class={row_class[r]}" if r in row_class else ""}>'
                   + "".join(cell(r, c, v) for c, v in enumerate(row)) + "</tr>" for r, row in enumerate(rows))
    return f'<table{" class=sortable" if sortable else ""}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Page:
    """Collects sections and figures; `html()` is the finished file."""

    def __init__(self, title: str):
        self.title, self.parts, self._ids = title, [], 0
        self.needs_3d = False  # a figure has a 3-D trace: the page carries the 3-D bundle too

    def new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    def add(self, *parts: str) -> None:
        self.parts.extend(parts)

    def figure(self, fig: Any, sprite: tuple[str, int] | None = None, css_class: str = "plot", div_id: str = "") -> str:
        """A div the glue draws `fig` into; with a sprite (img id, columns), hover shows the digit."""
        div_id = div_id or self.new_id("fig")
        data = f' data-sprite="{sprite[0]}" data-cols="{sprite[1]}"' if sprite else ""
        if any(trace.type == "scatter3d" for trace in fig.data):
            data += ' data-lib="3d"'
            self.needs_3d = True
        if any(trace.type in ("scatter3d", "scattergl") for trace in fig.data):
            data += ' data-gl="1"'  # holds WebGL contexts while drawn: one of the GL_LIVE the page allows
        height = fig.layout.height or 450  # held before the figure is drawn, so lazy drawing sees where it is
        return (f'<div id="{div_id}" class="{css_class}" style="min-height:{height}px"{data}></div>'
                + json_script(div_id + "-json", fig.to_json(), "fig", target=div_id))

    def sprite(self, images_nhw: np.ndarray) -> tuple[str, int]:
        """All hover thumbnails in one PNG (a hidden img); returns its id and columns. Beyond
        FULL_SIZE_THUMBS digits they are halved (14 px for MNIST), which keeps a 10,000-point page
        under 5 MB (the sprite: 0.5 MB instead of 2.2 MB)."""
        sprite_id, cols = self.new_id("sprite"), render.sprite_cols(len(images_nhw))
        side = images_nhw.shape[1] if len(images_nhw) <= FULL_SIZE_THUMBS else images_nhw.shape[1] // 2
        sheet = render.sprite(images_nhw, max_px=side * cols)
        self.add(img(array_png(sheet), "digit thumbnails", id=sprite_id, style="display:none"))
        return sprite_id, cols

    def slider(self, steps: Sequence[int], images: Sequence[str | None], frames: Sequence[Any],
               img_id: str, map_id: str) -> str:
        """A range input over `steps` that swaps the image `img_id` and restyles the map `map_id`."""
        src = self.new_id("steps")
        last = len(steps) - 1
        return (json_script(src, {"steps": list(steps), "images": list(images), "frames": list(frames)})
                + f'<div class="slider" data-src="{src}" data-img="{img_id}" data-map="{map_id}">'
                f'<input type="range" min="0" max="{last}" value="{last}" aria-label="step">'
                f'<span class="step">step {steps[-1]}</span></div>')

    def html(self) -> str:
        bundles = ("2d", "3d") if self.needs_3d else ("2d",)
        return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
                f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>"
                + "".join(self.parts) + '<div id="hover-thumb"></div>' + json_script("plotly-template", template_json())
                + "".join(f'<script id="plotly-{b}" type="application/octet-stream">{plotly_b64(b)}</script>'
                          for b in bundles)
                + f"<script>{GLUE}</script></body></html>")
