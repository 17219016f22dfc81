"""The chapters' results read in words, against the control: sentences made from the figures.

    display(Markdown(read_rosetta_neurons(chance_report(trained, control)["rosetta_neurons"])))

A chapter prints a count and then says what it means; the saying is generated here from
the same numbers, so that a rerun with other figures (another zoo, another K, the full
scale) is read as truly as the default run, "no better than chance" included.
"""

from __future__ import annotations

from rosetta_lite.dictionary.rosetta import RosettaDictionary
from rosetta_lite.evaluation.concepts import learned_concept


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


SHIFT_NIL = 0.02  # a shift of the median best correlation smaller than this is read as none


def _no_control(consequence: str) -> str:
    return (f"No control was mined (the run's control = False), so {consequence}: only untrained copies of the "
            "encoders, mined on the same images, measure what an untrained zoo gives.")


def read_best_correlations(trained: RosettaDictionary, control: RosettaDictionary | None = None) -> str:
    """One paragraph on each generator unit's best correlation per encoder: trained against untrained.

        read_best_correlations(*load_dictionaries("runs/lite"))

    Compares the medians over generator units (what the histograms of
    :func:`~rosetta_lite.viz.best_correlation_figure` show) and says where training raised
    them, lowered them, or left them within ``SHIFT_NIL``. Without a control (None) it gives
    the trained medians and says that they cannot be read against chance.
    """
    if control is None:
        figures = "; ".join(f"{e} {float(trained.similarity(e).nan_to_num(-1.0).amax(1).median()):.2f}"
                            for e in trained.encoders)
        return (f"Median best correlation of a generator unit with each trained encoder: {figures}. "
                + _no_control("these correlations cannot be told from chance"))
    shifts = {}
    for encoder in trained.encoders:
        twin = next(e for e in control.encoders if e.startswith(encoder))
        medians = [float(d.similarity(e).nan_to_num(-1.0).amax(1).median()) for d, e in ((trained, encoder),
                                                                                        (control, twin))]
        shifts[encoder] = medians
    figures = "; ".join(f"{e} {t:.2f} against {c:.2f}" for e, (t, c) in shifts.items())
    groups = {"raised": [], "lowered": [], "left": []}
    for encoder, (t, c) in shifts.items():
        groups["raised" if t - c >= SHIFT_NIL else "lowered" if c - t >= SHIFT_NIL else "left"].append(encoder)
    said = [f"{verb} for {_names(groups[key])}" for key, verb in (
        ("raised", "training raised it"), ("lowered", "lowered it"), ("left", f"left it within {SHIFT_NIL}"))
        if groups[key]]
    return (f"Median best correlation of a generator unit, trained encoder against its untrained copy: {figures}. "
            f"So {'; '.join(said)}. A higher best correlation is not yet a shared concept: an "
            "untrained network's units follow colours and regions too, and chapter 04 asks which concepts the "
            "pairs hold.")


def read_rosetta_neurons(counts: dict) -> str:
    """One paragraph on Rosetta neurons: trained against the untrained control, and above chance.

        read_rosetta_neurons({"trained": 13, "control": 14, "trained_above_chance": 0})

    A ``control`` of None (a run mined without one) is read as such: the count alone.
    """
    trained, control, strict = counts["trained"], counts["control"], counts["trained_above_chance"]
    if control is None:
        return (f"The trained zoo has {_plural(trained, 'Rosetta neuron')}. "
                + _no_control("the count cannot be told from chance"))
    if trained > control:
        compare = f"{trained - control} more than the untrained control's {control}"
    else:
        compare = (f"no more than the untrained control's {control}: an untrained zoo pairs as many units, "
                   "so the count alone shows nothing that training taught")
    if strict == 0:
        verdict = ("None of them is above chance: every best-buddy correlation of a Rosetta neuron stays below "
                   "the control's 99th percentile, so each one is a pairing an untrained zoo also makes.")
    else:
        verdict = (f"{_plural(strict, 'Rosetta neuron')} of the trained zoo keep a best buddy above the "
                   "control's 99th percentile in every encoder: those are what training added.")
    return f"The trained zoo has {_plural(trained, 'Rosetta neuron')}, {compare}. {verdict}"


def _concepts(per_concept: dict) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(per_concept.items(), key=lambda kv: -kv[1])) or "none"


def read_concepts(report: dict) -> str:
    """One paragraph on the labelled clusters of the trained dictionary against the control's.

        read_concepts(concept_report(trained, control))

    Sky, ground and colours are held by untrained networks too; a concept counts as learned
    only where the trained dictionary has clusters of it and the control has fewer. A report
    without a control (None) is read as such: no concept can be called learned.
    """
    if report.get("control") is None:
        return (f"Trained: {_plural(report['trained']['n_clusters'], 'cluster')} "
                f"({_concepts(report['trained']['per_concept'])}). "
                + _no_control("none of these concepts can be called learned"))
    trained, control = report["trained"]["per_concept"], report["control"]["per_concept"]
    learned = {c: n for c, n in trained.items() if learned_concept(c) and n > control.get(c, 0)}
    opening = (f"Trained: {_plural(report['trained']['n_clusters'], 'cluster')} ({_concepts(trained)}); "
               f"untrained control: {_concepts(control)}.")
    if not learned:
        return (f"{opening} Every concept of the trained dictionary is one the control also has, or one that "
                "untrained networks hold anyway (sky, ground, colours): this dictionary is no better than chance.")
    names = ", ".join(sorted(learned))
    return (f"{opening} Only {names} {'is a concept' if len(learned) == 1 else 'are concepts'} the trained "
            "dictionary has beyond the control's; everything else an untrained zoo finds as well.")


def read_strict(summary: dict | None) -> str:
    """One sentence on the dictionary kept above the control's chance level (None: no control, no such level).

        read_strict(above_chance(trained, control).summary())
    """
    if summary is None:
        return _no_control("there is no chance level to keep the dictionary above")
    neurons, clusters = summary["rosetta_neurons"], summary["clusters"]
    if neurons == 0:
        return ("Kept above the control's 99th percentile in every encoder, the dictionary is empty: no Rosetta "
                "neuron of this zoo is stronger than what untrained encoders give.")
    return (f"Kept above the control's 99th percentile in every encoder, {_plural(neurons, 'Rosetta neuron')} "
            f"in {_plural(clusters, 'cluster')} remain: the part of the dictionary that chance does not explain.")


def read_nulls(report: dict, k: int = 3, subject: str = "the trained zoo") -> str:
    """One paragraph on the trained zoo against its three nulls at the chapters' ``k``, and the operating point.

        read_nulls(null_report("runs/lite"), k=3)

    ``subject`` names what was mined against the nulls (another wording for a generator pair).
    """
    rows = {row["k"]: row for row in report["rows"]}
    if k not in rows:
        raise ValueError(f"the report has no row for K = {k}; it has K = {sorted(rows)}")
    row = rows[k]
    t, c, s = (row[n]["n_learned"] for n in ("trained", "control", "shuffled"))
    counts = ("counts alone do not separate them" if row["trained"]["n_rosetta"] <= row["control"]["n_rosetta"]
              else "more than the control, but a count says nothing of what the neurons hold")
    opening = (f"At K = {k} {subject} has {_plural(row['trained']['n_rosetta'], 'Rosetta neuron')} in "
               f"{_plural(row['trained']['n_clusters'], 'cluster')}, the untrained control "
               f"{row['control']['n_rosetta']} in {row['control']['n_clusters']}, the image-shuffle null "
               f"{row['shuffled']['n_rosetta']} in {row['shuffled']['n_clusters']}: {counts}.")
    if t <= c:
        learned = (f"Clusters of learned concepts (not sky, ground or a colour): trained {t}, control {c}, shuffled "
                   f"{s}: no better than chance.")
    else:
        learned = (f"Clusters of learned concepts (not sky, ground or a colour) separate them: trained {t}, control "
                   f"{c}, shuffled {s}.")
    above = row["trained"]["n_learned_above"]
    if above == 0:
        strict = ("None of the learned clusters correlates above the shuffle's "
                  f"{report['settings']['quantile']:g} quantile in every encoder: pairing a generator image with "
                  "another image's encoder maps gives correlations as high, so a correlation that strong needs "
                  "no shared content: the layout every scene shares gives it.")
    else:
        strict = (f"{_plural(above, 'learned cluster')} correlate above the shuffle's "
                  f"{report['settings']['quantile']:g} quantile in every encoder: content, not layout.")
    return f"{opening} {learned} {strict} Operating point: {report['reason']}."


def read_generators(report: dict, k: int = 3) -> str:
    """One paragraph on two generators matched (``eval generators``), against the nulls and the paper's finding.

        read_generators(generator_pair_report("runs/generators"), k=3)
    """
    s = report["settings"]
    row = next((r for r in report["rows"] if r["k"] == k), None)
    if row is None:
        raise ValueError(f"the report has no row for K = {k}; it has K = {[r['k'] for r in report['rows']]}")
    opening = (f"{s['generator']}'s units were matched with those of {s['redrawer']}, which read each of the "
               f"{s['images_counted']} {s['generator']} images into a latent and redrew it.")
    t, c, above = row["trained"]["n_learned"], row["control"]["n_learned"], row["trained"]["n_learned_above"]
    if t > c and above > 0:
        verdict = ("The paper reports that its matching fails between two GANs; with a reader that gives the second "
                   "generator the first one's image, it does not fail here: shared learned concepts, above both "
                   "nulls.")
    elif t > c:
        verdict = ("The paper reports that its matching fails between two GANs; here it finds more learned "
                   "concepts than the untrained redrawer, but none correlates above the shuffle: a weak result, "
                   "not a failure and not a success.")
    else:
        verdict = ("As the paper reports for two GANs, the matching fails here: the trained redrawer shares no "
                   "more learned concepts with the generator than its untrained copy.")
    nulls = read_nulls(report, k, subject=f"the trained {s['redrawer']}")
    return f"{opening} {nulls} {verdict}"


def _interval(summary: dict, unit: str) -> str:
    low, high = summary["ci95"]
    return f"{summary['mean']:+.2f}{unit} (95% CI {low:+.2f} to {high:+.2f})"


def _verdict(summary: dict) -> str:
    low, high = summary["ci95"]
    return "helps" if low > 0 else "hurts" if high < 0 else "is not shown either way: the interval holds 0"


def read_inversion(report: dict) -> str:
    """One paragraph on Table 1: each objective's paired PSNR gain over perceptual only, with its interval.

        read_inversion(evaluate_inversion(dictionary, images=50))
    """
    rows = [r for r in report["rows"] if r.get("minus_perceptual_only")]
    if not rows:
        raise ValueError("the report has no row paired with perceptual only; evaluate_inversion makes them")
    everything = next((r for r in rows if r["objective"] == "+ all matches"), rows[-1])
    gain = everything["minus_perceptual_only"]["psnr"]
    best = max(rows, key=lambda r: r["minus_perceptual_only"]["psnr"]["mean"])
    n = gain.get("n", report.get("images"))
    text = (f"On {n} targets, {everything['objective']} changes PSNR by {_interval(gain, ' dB')} against "
            f"perceptual only: adding the matches {_verdict(gain)}.")
    if best is not everything:
        text += (f" The best single row, {best['objective']}, gives "
                 f"{_interval(best['minus_perceptual_only']['psnr'], ' dB')}.")
    return text + " The paper's Table 1 has every row of matches above perceptual only."


def read_outside(report: dict) -> str:
    """One paragraph on Table 1 per kind of target and start (``eval outside``): where the matches raise PSNR.

        read_outside(evaluate_outside(dictionary, images=32))
    """
    gains = {(r["targets"], r["warm_start"]): r["report"]["rows"][-1]["minus_perceptual_only"]
             for r in report["rows"]}
    start = {True: "from the reader's guess", False: "from a random latent"}
    helped = [f"{kind} {start[warm]}" for (kind, warm), g in gains.items() if g["psnr"]["ci95"][0] > 0]
    hurt = [f"{kind} {start[warm]}" for (kind, warm), g in gains.items() if g["psnr"]["ci95"][1] < 0]
    closer = [f"{kind} {start[warm]}" for (kind, warm), g in gains.items() if g["perceptual"]["ci95"][1] < 0]
    text = (f"{len(gains)} settings, {report['images']} targets each. + all matches raises PSNR with a 95% interval "
            f"above 0 for {_names(helped) if helped else 'none of them'}")
    text += f"; lowers it for {_names(hurt)}." if hurt else "."
    if closer:
        text += (f" It brings the perceptual distance down (interval below 0) for {_names(closer)}; that distance "
                 "is the objective's own perceptual term, so it is not an independent judge.")
    if not helped:
        text += (" So the paper's Table 1 result, every encoder's matches raising PSNR, is not reproduced for any "
                 "kind of target here, inside the generator's range or outside it.")
    return text


def read_psnr_pair(plain: float, guided: float, what: str) -> str:
    """One sentence on two inversions of the same targets: perceptual only against + all matches, in dB.

        read_psnr_pair(psnr(plain.images, t).mean(), psnr(guided.images, t).mean(), "4 held-out scenes")
    """
    plain, guided = float(plain), float(guided)
    if abs(guided - plain) < 0.1:
        compare = "the same within 0.1 dB"
    else:
        compare = f"{abs(guided - plain):.1f} dB {'higher' if guided > plain else 'lower'} with the matches"
    return (f"On {what}: perceptual only {plain:.1f} dB PSNR, + all matches {guided:.1f} dB, {compare}. So few "
            "images decide nothing: Table 1 pairs the objectives on the same targets, with confidence intervals.")


def read_warm_start(psnr: dict[str, tuple[float, float]]) -> str:
    """One paragraph on the reader's warm start: per objective, PSNR from random latents and from the guess.

        read_warm_start({"perceptual only": (14.2, 25.0), "+ all matches": (15.0, 24.1)})   # (cold, warm)
    """
    (plain_cold, plain_warm), (guided_cold, guided_warm) = psnr["perceptual only"], psnr["+ all matches"]
    lift = (plain_warm - plain_cold + guided_warm - guided_cold) / 2
    cold_gap, warm_gap = guided_cold - plain_cold, guided_warm - plain_warm
    text = (f"From random latents: perceptual only {plain_cold:.1f} dB, + all matches {guided_cold:.1f} dB; from "
            f"the reader's guess: {plain_warm:.1f} and {guided_warm:.1f} dB. The guess adds {lift:+.1f} dB on "
            f"average, and the matches change PSNR by {cold_gap:+.1f} dB from a cold start, {warm_gap:+.1f} dB "
            "from the guess.")
    if abs(warm_gap) < abs(cold_gap):
        return text + (" Started next to the answer, the optimisation leaves the matches less to do: the paper's "
                       "inversions have no such guess, so Table 1 here, which starts from it, is not the "
                       "paper's situation.")
    return text + " The warm start does not shrink what the matches change here."


def read_editing(report: dict) -> str:
    """One paragraph on ``evaluate_editing``: each geometric edit's gain and where a removal changes pixels.

        read_editing(evaluate_editing(dictionary, images=16))

    Reads the Rosetta units' rows of the default setting (the all-units rows where no
    Rosetta row exists) and the first removal variant (the default one).
    """
    rows = [r for r in report["geometry"] if r["setting"] == "default"]
    chosen = {}
    for row in rows:
        if row["edit"] not in chosen or row["units"] == "rosetta":
            chosen[row["edit"]] = row
    gains = "; ".join(f"{edit} ({row['units']} units) {_interval(row['difference'], ' dB')}"
                      for edit, row in chosen.items())
    followed = [e for e, r in chosen.items() if r["difference"]["ci95"][0] > 0]
    geometry = (f"Against the same transform applied to the pixels, the edited generation gains over the unedited "
                f"one: {gains}. " + (f"The interval excludes 0 for {len(followed)} of the {len(chosen)} edits: the "
                                     "generator follows them." if followed else "No interval excludes 0."))
    removal = report["removal"]["variants"][0]
    area, inside = removal["mean_region_area_share"], removal["mean_share_of_changed_pixels_inside_region"]
    still = sum(c["changed_share_inside_region"] == 0 and c["changed_share_outside_region"] == 0
                for c in removal["clusters"])
    local = ("more than its share of the image: the removal is local" if inside > area else
             "no more than its share of the image: the removal is not local")
    z_before, z_after = removal["mean_unit_z_inside_region_before"], removal["mean_unit_z_inside_region_after"]
    # None: no cluster's region has a cell on the maps' grid (its units never exceed the threshold here)
    z_moved = (f"its units' z-score inside the region goes from {z_before:.2f} to {z_after:.2f}"
               if z_before is not None and z_after is not None else
               "no region holds a cell of its units' maps here, so their z-score inside it is not measured")
    text = (f"Removing a cluster ({removal['variant']}): its region covers {area:.0%} of the image on average and "
            f"{inside:.0%} of the changed pixels fall inside it, {local}; {z_moved}.")
    if still:
        text += f" {still} of {len(removal['clusters'])} clusters change no pixel at all."
    return f"{geometry} {text}"


def read_local_edits(changed: dict[str, float], cluster: int) -> str:
    """One sentence on a cluster's local edits: the share of pixels each one changed.

        read_local_edits({"removed": 0.0, "added": 0.12}, cluster=0)
    """
    parts = [f"{name} {share:.0%}" for name, share in changed.items()]
    text = f"Share of pixels changed (some channel by more than 0.1) by cluster {cluster}'s edits: {', '.join(parts)}."
    still = [name for name, share in changed.items() if share == 0]
    if still:
        text += (f" {_names(still).capitalize()} changed no pixel: at these settings this cluster's units do not "
                 "steer the image, and the evaluation below counts how many clusters are like it.")
    return text


def read_stability(report: dict) -> str:
    """One paragraph on how many clusters come back on a second, disjoint image set, trained against control.

        read_stability(stability_report("runs/lite"))
    """
    t, c = report["trained"], report["control"]
    opening = (f"On two disjoint sets of {report['settings']['images']} images, {t['matched']} of the trained "
               f"zoo's {t['clusters'][0]} clusters find a match on the other set ({t['same_concept']} with the same "
               f"concept); the control's: {c['matched']} of {c['clusters'][0]} ({c['same_concept']}).")
    if not t["learned"]:
        return f"{opening} The trained dictionary has no learned concept whose stability could be asked."
    return (f"{opening} Of the trained zoo's {_plural(t['learned'], 'learned cluster')}, {t['learned_stable']} "
            f"{'comes back with its' if t['learned_stable'] == 1 else 'come back with their'} concept "
            f"({t['learned_fraction']:.0%}).")


def read_mining(report: dict) -> str:
    """One paragraph on the mining benchmark: its ratios against their targets, and whether to trust them.

        read_mining(load_result("mining")["report"])
    """
    overhead, speedup = report["ratios_by_round"]["overhead"], report["ratios_by_round"]["speedup"]
    o_ok = overhead["median"] <= report["overhead_target"]
    s_ok = speedup["median"] >= report["speedup_target"]
    parts = [f"Outside the models' passes, mining takes {overhead['median']:.2f} times as long as its matrix "
             f"multiplies alone, {'within' if o_ok else 'above'} the target of {report['overhead_target']}; "
             f"it is {speedup['median']:.1f} times as fast as the official two-pass algorithm "
             f"({'meeting' if s_ok else 'short of'} the target of {report['speedup_target']}), at "
             f"{report['images_per_s']:.0f} images a second on {report['threads']} threads."]
    if not o_ok:
        parts.append("What the overhead counts beyond the products is memory traffic: each batch's rows are "
                     "copied out of the recorded maps, centred, squared through the resizing's Gram matrix, and "
                     "each product is added into a float64 table, passes that a CPU's memory, not its arithmetic, "
                     "limits.")
    preparation = report["ratios_by_round"].get("preparation")
    if preparation is not None:
        floor = 1 + preparation["median"]
        reach = ("the target is out of reach while mining prepares its rows this way"
                 if floor > report["overhead_target"] else "that leaves room under the target")
        parts.append(f"Preparing the rows alone (building, centring and carrying them to the products' sides, "
                     f"without the products) takes {preparation['median']:.2f} times as long as the multiplies: "
                     f"mining does both, so its overhead cannot fall below about {floor:.2f}: {reach}.")
    untrusted = [name for name, ratio in (("overhead", overhead), ("speed-up", speedup), ("preparation", preparation))
                 if ratio is not None and not ratio["trusted"]]
    if untrusted:
        parts.append(f"The rounds of the {' and the '.join(untrusted)} disagree by more than a fifth: the machine's "
                     "load changed during the run, so rerun it on a quiet machine before comparing.")
    return " ".join(parts)
