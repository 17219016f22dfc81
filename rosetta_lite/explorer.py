"""The concept explorer: every Rosetta cluster of a run, browsable in the static book.

    concept_explorer(run.generator, {"trained": (trained, run.members), "control": (control, None)})

Plain HTML and a few lines of JavaScript, with each cluster's figure embedded as a JPEG:
it needs no kernel and no network, so it works in the built book, in Jupyter and in
Colab alike. A search box filters the clusters by any word of their cards (concept,
zoo, model, layer); a selector picks one. ``?concept=WORDS`` in the page's address
fills the search box, so a link can open the explorer on a concept.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io

import matplotlib.pyplot as plt

from rosetta_lite.dictionary.rosetta import Cluster, RosettaDictionary
from rosetta_lite.dictionary.units import strongest_latents
from rosetta_lite.evaluation.concepts import cluster_order, dictionary_members
from rosetta_lite.viz import cluster_figure
from rosetta_lite.zoo.member import Member

_SCRIPT = """
(function () {
  var root = document.getElementById("%(id)s");
  var search = root.querySelector("input"), select = root.querySelector("select");
  var count = root.querySelector(".rx-count");
  var cards = Array.prototype.slice.call(root.querySelectorAll(".rx-card"));
  function show(id) { cards.forEach(function (card) { card.hidden = card.dataset.id !== id; }); }
  // a query word matches the start of a word of the card ("ring" finds shape:ring; "trained" does not
  // find lite-clip@untrained, so the two zoos can be told apart)
  function tokens(text) { return text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean); }
  function filter() {
    var words = tokens(search.value);
    var shown = cards.filter(function (card) {
      var have = tokens(card.dataset.search);
      return words.every(function (word) { return have.some(function (t) { return t.indexOf(word) === 0; }); });
    });
    select.innerHTML = "";
    shown.forEach(function (card) {
      var option = document.createElement("option");
      option.value = card.dataset.id; option.textContent = card.dataset.title; select.appendChild(option);
    });
    count.textContent = shown.length + " of " + cards.length + " clusters";
    show(shown.length ? shown[0].dataset.id : null);
  }
  search.addEventListener("input", filter);
  select.addEventListener("change", function () { show(select.value); });
  var asked = new URLSearchParams(window.location.search).get("concept");
  if (asked) { search.value = asked; }
  filter();
  root.setAttribute("data-ready", "1");
})();
"""


class ExplorerHTML(str):
    """The explorer's HTML; Jupyter and the book show it as HTML (``_repr_html_``)."""

    def _repr_html_(self) -> str:
        return str(self)


def _jpeg(figure: plt.Figure, dpi: int) -> str:
    buffer = io.BytesIO()  # JPEG: heat maps are smooth, a tenth of a PNG's size for the same look
    figure.savefig(buffer, format="jpeg", dpi=dpi, bbox_inches="tight", pil_kwargs={"quality": 75})
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _card(zoo_label: str, dictionary: RosettaDictionary, cluster: Cluster, picture: str, index: int,
          what: str) -> str:
    concept = cluster.concept or "unlabelled"
    iou = f"IoU {cluster.iou:.2f} with its ground-truth mask" if cluster.iou is not None else "no label above chance"
    title = f"{zoo_label} · cluster {cluster.id}: {concept}"
    units = {dictionary.generator: cluster.generator_units, **cluster.members}
    names = {model: [dictionary.unit_name(model, u) for u in found] for model, found in units.items()}
    rows = "".join(f"<tr><td>{html.escape(model)}</td><td>{html.escape(', '.join(n.split(':', 1)[1] for n in found))}"
                   "</td></tr>" for model, found in names.items())
    words = " ".join([title, iou, *(n for found in names.values() for n in found)]).lower()
    return (f'<div class="rx-card" data-id="{zoo_label}-{index}" data-title="{html.escape(title)}" '
            f'data-search="{html.escape(words)}" hidden>'
            f"<p><b>{html.escape(title)}</b> ({html.escape(what)}) · {iou} · "
            f"mean best-buddy correlation {cluster.score:.2f} · {len(cluster.generator_units)} generator unit(s)</p>"
            f'<img alt="{html.escape(title)}" src="data:image/jpeg;base64,{picture}" style="max-width:100%">'
            f'<details><summary>units in every model</summary><table>{rows}</table></details></div>')


def concept_explorer(generator: Member, dictionaries: dict[str, tuple[RosettaDictionary, dict | None]], *,
                     images: int = 3, seed: int = 3, size: int = 48, dpi: int = 72, pool: int = 64) -> ExplorerHTML:
    """Every cluster of each dictionary, learned concepts first, with its heat maps on the ``images`` generated
    images (of a seeded pool of ``pool``) that drive its generator units hardest.

        concept_explorer(run.generator, {"trained": (run.trained, run.members), "control": (run.control, None)})

    ``dictionaries`` maps a zoo's label to its dictionary and members (encoder name ->
    member; ``None`` rebuilds them, e.g. the control's untrained copies). A cluster's
    concept and IoU are those ``label_clusters`` or ``concept_report`` gave it; each card says
    whether the other dictionary given holds the same concept (:func:`cluster_order`).
    """
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    given = {label: pair for label, pair in dictionaries.items() if pair[0] is not None}
    cards = []
    for label, (dictionary, members) in given.items():
        members = members if members is not None else dictionary_members(dictionary)
        other = next(((name, d) for name, (d, _) in given.items() if name != label), (None, None))
        order = cluster_order(dictionary, other[1], other[0] or "")
        clusters = [dictionary.clusters[index] for index, _ in order]
        latents = strongest_latents(generator, dictionary, clusters, n=images, pool=pool, seed=seed)
        for index, (cluster, (_, what), z) in enumerate(zip(clusters, order, latents)):
            picture = _jpeg(cluster_figure(dictionary, generator, members, z, cluster, size), dpi)
            cards.append(_card(label, dictionary, cluster, picture, index, what))
    if not cards:
        raise ValueError("no clusters to explore: every dictionary given is empty or None")
    root = "rosetta-explorer-" + hashlib.sha1("".join(cards).encode()).hexdigest()[:8]  # same run, same page
    return ExplorerHTML(
        f'<div class="rosetta-explorer" id="{root}">'
        f'<p><input type="search" placeholder="search: a concept, zoo, model or layer" aria-label="search clusters"> '
        f'<select aria-label="cluster"></select> <span class="rx-count"></span></p>{"".join(cards)}</div>'
        f"<script>{_SCRIPT % {'id': root}}</script>")
