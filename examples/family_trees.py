"""The 1986 family trees (Rumelhart, Hinton & Williams, Nature 323:533, figs. 2-4).

Two isomorphic families of 12 people, English and Italian, and 12 relations. A query is a
(person, relation) pair; its answer is every person who stands in that relation to the
person (104 queries, 112 triples). The network: 24 person units -> their own 6 units, 12
relation units -> their own 6 units (one masked Dense of the 36 inputs onto 12 units), then
12 central units, 6 units and 24 output people, all logistic, E = 1/2 sum (y - d)^2 over
cases and outputs, full batch. It is trained on 100 queries and tested on the 4 it never saw:
an output is right if above 0.8 when it should be on and below 0.2 when off, a query if all
24 outputs are right.

Two recipes, both with the paper's schedule shape (a gentle start, alpha = 0.5 for 20 sweeps,
then alpha = 0.9) and every weight decayed by 0.2% after each update:
  paper    as printed: epsilon 0.005 then 0.01, 1,500 sweeps, weights U[-0.3, 0.3]. Here it
           does not learn: the outputs settle on the base rate (E ~ 51) and stay there.
  default  epsilon 0.05 then 0.1 (ten times the paper's), 3,000 sweeps, weights U[-1, 1]:
           the smallest change found that learns the training set in most splits.

    python examples/family_trees.py [--splits 20] [--recipe default|paper] [--out DIR]
"""
import argparse
import os
import time

import numpy as np

import bpcore

# The two families, person for person in the same position of the same tree.
ENGLISH = ["Christopher", "Penelope", "Andrew", "Christine", "Margaret", "Arthur",
           "Victoria", "James", "Jennifer", "Charles", "Colin", "Charlotte"]
ITALIAN = ["Roberto", "Maria", "Pierro", "Francesca", "Gina", "Emilio",
           "Lucia", "Marco", "Angela", "Tomaso", "Alfonso", "Sophia"]
PEOPLE = ENGLISH + ITALIAN
RELATIONS = ["father", "mother", "husband", "wife", "son", "daughter",
             "uncle", "aunt", "brother", "sister", "nephew", "niece"]

# The tree, by position in the lists above (the same for both families):
#   Christopher = Penelope          Andrew = Christine
#          |                               |
#   Margaret = Arthur   Victoria = James   Jennifer = Charles
#                           |
#                   Colin     Charlotte
_MALE = {0, 2, 5, 7, 9, 10}
_COUPLES = [(0, 1), (2, 3), (5, 4), (7, 6), (9, 8)]               # (husband, wife)
_CHILDREN = {(0, 1): [5, 6], (2, 3): [7, 8], (7, 6): [10, 11]}     # couple -> children

# Attributes of each position, for reading the learned codes: generation 1-3, and the
# branch of the tree (left: Christopher and Penelope's side, right: Andrew and Christine's);
# Colin and Charlotte descend from both branches and have none.
GENERATION = [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3]
BRANCH = ["left", "left", "right", "right", "left", "left", "left", "right", "right", "right",
          None, None]


def _family_relations():
    """{(person, relation): set of people} for one family, by position 0..11, derived from
    marriages, parenthood and sex (uncles and aunts include those by marriage)."""
    spouse, parents, children = {}, {p: [] for p in range(12)}, {p: [] for p in range(12)}
    for h, w in _COUPLES:
        spouse[h], spouse[w] = w, h
    for couple, kids in _CHILDREN.items():
        for k in kids:
            parents[k] = list(couple)
            for p in couple:
                children[p].append(k)

    def siblings(p):
        return {q for q in range(12) if q != p and parents[q] and parents[q] == parents[p]}

    def male(ps):
        return {p for p in ps if p in _MALE}

    def female(ps):
        return {p for p in ps if p not in _MALE}

    def aunts_uncles(p):
        out = set()
        for par in parents[p]:
            for s in siblings(par):
                out.add(s)
                if s in spouse:
                    out.add(spouse[s])
        return out

    def nieces_nephews(p):
        sibs = set(siblings(p))
        if p in spouse:
            sibs |= siblings(spouse[p])
        return {c for s in sibs for c in children[s]}

    rel = {}
    for p in range(12):
        sp = {spouse[p]} if p in spouse else set()
        found = {
            "father": male(parents[p]), "mother": female(parents[p]),
            "husband": male(sp), "wife": female(sp),
            "son": male(children[p]), "daughter": female(children[p]),
            "uncle": male(aunts_uncles(p)), "aunt": female(aunts_uncles(p)),
            "brother": male(siblings(p)), "sister": female(siblings(p)),
            "nephew": male(nieces_nephews(p)), "niece": female(nieces_nephews(p)),
        }
        for r, who in found.items():
            if who:
                rel[(p, r)] = who
    return rel


def queries():
    """[(person, relation, answers)] over both families: names, in a fixed order."""
    out = []
    for offset, names in ((0, ENGLISH), (12, ITALIAN)):
        for (p, r), who in sorted(_family_relations().items(),
                                  key=lambda kv: (kv[0][0], RELATIONS.index(kv[0][1]))):
            out.append((names[p], r, sorted(PEOPLE[offset + q] for q in who)))
    return out


def triples():
    """[(person, relation, other)]: every fact in the two trees."""
    return [(p, r, a) for p, r, answers in queries() for a in answers]


def encode(qs, dtype="float64"):
    """Inputs (n, 36): one-hot person then one-hot relation; targets (n, 24) multi-hot."""
    X = np.zeros((len(qs), 36), dtype)
    T = np.zeros((len(qs), 24), dtype)
    for i, (p, r, answers) in enumerate(qs):
        X[i, PEOPLE.index(p)] = 1
        X[i, 24 + RELATIONS.index(r)] = 1
        for a in answers:
            T[i, PEOPLE.index(a)] = 1
    return X, T


def block_mask():
    """(36, 12): the 24 person inputs reach units 0-5 only, the 12 relation inputs 6-11 only."""
    mask = np.zeros((36, 12))
    mask[:24, :6] = 1
    mask[24:, 6:] = 1
    return mask


def build(seed, init=0.3):
    """36 -(masked)-> 6 + 6 -> 12 -> 6 -> 24, all logistic, weights and biases U[-init, init]."""
    rng = np.random.default_rng(seed)
    s = [int(x) for x in rng.integers(0, 2**63, size=4)]
    return bpcore.Sequential(
        bpcore.Dense(36, 12, mask=block_mask(), init=init, dtype="float64", seed=s[0]),
        bpcore.Sigmoid(),
        bpcore.Dense(12, 12, init=init, dtype="float64", seed=s[1]), bpcore.Sigmoid(),
        bpcore.Dense(12, 6, init=init, dtype="float64", seed=s[2]), bpcore.Sigmoid(),
        bpcore.Dense(6, 24, init=init, dtype="float64", seed=s[3]), bpcore.Sigmoid())


RECIPES = {
    # the paper as printed
    "paper": {"init": 0.3, "lr": (0.005, 0.01), "momentum": (0.5, 0.9), "warmup": 20,
              "decay": 0.002, "sweeps": 1500},
    # ten times the paper's epsilon, larger initial weights, twice the sweeps
    "default": {"init": 1.0, "lr": (0.05, 0.1), "momentum": (0.5, 0.9), "warmup": 20,
                "decay": 0.002, "sweeps": 3000},
}


def schedule_for(recipe):
    """fit's schedule: the first lr and momentum for ``warmup`` sweeps, then the second."""
    def schedule(epoch):
        k = 0 if epoch < recipe["warmup"] else 1
        return {"lr": recipe["lr"][k], "momentum": recipe["momentum"][k]}
    return schedule


def correct(Y, T):
    """Per query: all outputs above 0.8 where the target is 1 and below 0.2 where it is 0."""
    return np.where(T > 0.5, Y > 0.8, Y < 0.2).all(axis=1)


def top_k_right(Y, T):
    """Per query: the k most active outputs are exactly its k answers (a looser reading)."""
    k = T.sum(axis=1).astype(int)
    return np.array([set(np.argsort(-y)[:n]) == set(np.flatnonzero(t))
                     for y, t, n in zip(Y, T, k)])


def split(seed, n, n_test=4):
    """(train, test) row indices: n_test queries held out at random, seeded."""
    test = np.sort(np.random.default_rng(seed).choice(n, n_test, replace=False))
    return np.setdiff1d(np.arange(n), test), test


def train_split(seed, X, T, recipe, n_test=4):
    """Hold out n_test random queries, train on the rest; returns the run's results."""
    train, test = split(seed, len(X), n_test)
    model = build(seed, recipe["init"])
    W0 = model.layers[0].W[:24, :6].copy()
    opt = bpcore.SGD(model, lr=recipe["lr"][0], momentum=recipe["momentum"][0],
                     decay=recipe["decay"])
    hist = model.fit(X[train], T[train], loss=bpcore.MSELoss("half_sum"), optimizer=opt,
                     epochs=recipe["sweeps"], batch_size=len(train), shuffle=False,
                     schedule=schedule_for(recipe))
    Ytr, Yte = model.predict(X[train]), model.predict(X[test])
    return {"seed": seed, "test": test, "model": model, "E": np.asarray(hist["loss"]),
            "train_correct": int(correct(Ytr, T[train]).sum()), "n_train": len(train),
            "test_correct": int(correct(Yte, T[test]).sum()), "n_test": n_test,
            "test_top_k": int(top_k_right(Yte, T[test]).sum()),
            "test_outputs": Yte, "W_person": model.layers[0].W[:24, :6].copy(),
            "W_person_initial": W0}


def eta_squared(w, groups):
    """Share of the variance of w explained by the grouping (one-way ANOVA R^2), over the
    entries whose group is not None."""
    keep = np.array([g is not None for g in groups])
    w = np.asarray(w)[keep]
    g = np.array([x for x in groups if x is not None], dtype=object)
    total = ((w - w.mean()) ** 2).sum()
    if total == 0:
        return 0.0
    between = sum((g == k).sum() * (w[g == k].mean() - w.mean()) ** 2 for k in set(g))
    return float(between / total)


ATTRIBUTES = {
    "nationality": ["English"] * 12 + ["Italian"] * 12,
    "generation": GENERATION * 2,
    "branch": BRANCH * 2,
}


def separation(W):
    """(6 units, 3 attributes) eta^2: how much of each unit's incoming person weights the
    person's nationality, generation and branch explain."""
    return np.array([[eta_squared(W[:, u], groups) for groups in ATTRIBUTES.values()]
                     for u in range(W.shape[1])])


def counterpart_correlation(W, sep):
    """Mean over the units that do not separate nationality (eta^2 < 0.5) of the correlation
    between a unit's weights from the 12 English people and from their 12 Italian
    counterparts: near 1 when the unit codes both families alike."""
    units = [u for u in range(W.shape[1]) if sep[u, 0] < 0.5]
    if not units:
        return float("nan")
    return float(np.mean([np.corrcoef(W[:12, u], W[12:, u])[0, 1] for u in units]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=20, help="random 100/4 splits (default 20)")
    ap.add_argument("--recipe", choices=tuple(RECIPES), default="default",
                    help="the recipe whose network is reported and drawn (default: default)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "figures"))
    ap.add_argument("--quick", action="store_true", help="3 splits")
    args = ap.parse_args(argv)
    if args.quick:
        args.splits = min(args.splits, 3)
    t0 = time.perf_counter()
    qs = queries()
    X, T = encode(qs)
    recipe = RECIPES[args.recipe]
    runs = [train_split(seed, X, T, recipe) for seed in range(args.splits)]
    for r in runs:
        r["separation"] = separation(r["W_person"])
        r["separation_initial"] = separation(r["W_person_initial"])
        r["counterparts"] = counterpart_correlation(r["W_person"], r["separation"])
        r["counterparts_initial"] = counterpart_correlation(r["W_person_initial"],
                                                            r["separation_initial"])
    summary = summarise(runs)
    # the other recipe on the same splits, for comparison
    other_name = "paper" if args.recipe == "default" else "default"
    other = summarise([train_split(seed, X, T, RECIPES[other_name])
                       for seed in range(args.splits)])
    seconds = time.perf_counter() - t0
    report(runs, summary, qs, args.recipe, other_name, other, seconds)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "family_trees.png")
    figure(runs, summary, path)
    print(f"figure: {path}")
    return {"runs": runs, "summary": summary, "other": other, "figure": path,
            "seconds": seconds, "queries": qs}


def summarise(runs):
    test = np.array([r["test_correct"] for r in runs])
    out = {
        "splits": len(runs),
        "test_correct": test.tolist(),
        "test_total": int(test.sum()), "test_queries": sum(r["n_test"] for r in runs),
        "test_hist": np.bincount(test, minlength=5).tolist(),
        "test_top_k": int(sum(r["test_top_k"] for r in runs)),
        "train_all_correct": sum(r["train_correct"] == r["n_train"] for r in runs),
        "train_correct_mean": float(np.mean([r["train_correct"] for r in runs])),
        "final_E_median": float(np.median([r["E"][-1] for r in runs])),
    }
    if "separation" in runs[0]:
        sep = np.array([r["separation"] for r in runs])             # (runs, units, attributes)
        sep0 = np.array([r["separation_initial"] for r in runs])
        out.update({
            # per attribute: the best unit's eta^2, mean over runs; and at initialisation
            "best_eta2": sep.max(axis=1).mean(axis=0).tolist(),
            "best_eta2_initial": sep0.max(axis=1).mean(axis=0).tolist(),
            "units_over_half": (sep > 0.5).sum(axis=1).mean(axis=0).tolist(),
            "units_over_half_initial": (sep0 > 0.5).sum(axis=1).mean(axis=0).tolist(),
            "counterparts": float(np.nanmean([r["counterparts"] for r in runs])),
            "counterparts_initial": float(np.nanmean([r["counterparts_initial"] for r in runs])),
        })
    return out


def example_run(runs):
    """The run shown in the figure: the first one that learned every training query, else
    the one that learned the most."""
    for r in runs:
        if r["train_correct"] == r["n_train"]:
            return r
    return max(runs, key=lambda r: r["train_correct"])


def _held_out_line(s):
    h = s["test_hist"]
    return (f"{s['test_total']} of {s['test_queries']} ({s['test_total'] / s['test_queries']:.0%}); "
            f"splits with 4/4, 3/4, 2/4, 1/4, 0/4: {h[4]}, {h[3]}, {h[2]}, {h[1]}, {h[0]}")


def _recipe_line(name):
    r = RECIPES[name]
    return (f"{name} recipe: eps {r['lr'][0]} then {r['lr'][1]}, alpha {r['momentum'][0]} then "
            f"{r['momentum'][1]} (after {r['warmup']} sweeps), decay {r['decay']:.1%} per update, "
            f"{r['sweeps']:,} sweeps, weights U[-{r['init']}, {r['init']}]")


def report(runs, s, qs, name, other_name, other, seconds):
    n_triples = sum(len(a) for _, _, a in qs)
    print(f"family trees: {len(PEOPLE)} people, {len(RELATIONS)} relations, {len(qs)} queries, "
          f"{n_triples} triples")
    print(f"network 36 -(masked)-> 6+6 -> 12 -> 6 -> 24 logistic, "
          f"{runs[0]['model'].num_parameters} weights and biases ({int(block_mask().sum()) + 12} "
          f"in the first layer); trained on 100 queries, tested on 4, {s['splits']} splits")
    print(_recipe_line(name))
    print(f"  training set learned completely in {s['train_all_correct']} of {s['splits']} splits "
          f"(mean {s['train_correct_mean']:.1f} of 100 queries right; median final E "
          f"{s['final_E_median']:.1f})")
    print(f"  held-out queries right, per split: {s['test_correct']}")
    print(f"  held-out total: {_held_out_line(s)}  (paper: 4/4 and 3/4 in two runs)")
    print(f"  looser reading (the k most active outputs are the k answers): {s['test_top_k']} of "
          f"{s['test_queries']}")
    print(_recipe_line(other_name))
    print(f"  training set learned completely in {other['train_all_correct']} of "
          f"{other['splits']} splits (mean {other['train_correct_mean']:.1f} of 100; median final "
          f"E {other['final_E_median']:.1f}); held out: {_held_out_line(other)}")
    names = list(ATTRIBUTES)
    print(f"what the 6 person-encoding units learned ({name} recipe): eta^2 = share of the "
          "variance of a unit's 24 incoming weights explained by the attribute (branch: the 20 "
          "people who have one)")
    print(f"  {'':<34}" + "".join(f"{n:>12}" for n in names))
    print(f"  {'best unit, mean over splits':<34}" + "".join(f"{v:>12.2f}" for v in s["best_eta2"]))
    print(f"  {'  the same at initialisation':<34}"
          + "".join(f"{v:>12.2f}" for v in s["best_eta2_initial"]))
    print(f"  {'units with eta^2 > 0.5, mean':<34}"
          + "".join(f"{v:>12.1f}" for v in s["units_over_half"]))
    print(f"  {'  the same at initialisation':<34}"
          + "".join(f"{v:>12.1f}" for v in s["units_over_half_initial"]))
    print(f"  English and Italian counterparts coded alike: correlation of a unit's weights from "
          f"the 12 English and the 12 Italians (units with nationality eta^2 < 0.5), mean "
          f"{s['counterparts']:.2f} (at initialisation {s['counterparts_initial']:.2f})")
    r = example_run(runs)
    print(f"  split {r['seed']} (the figure; {r['train_correct']}/100 training, "
          f"{r['test_correct']}/4 held out), per unit:")
    for u in range(6):
        print(f"    unit {u + 1}{'':<27}" + "".join(f"{v:>12.2f}" for v in r["separation"][u]))
    print(f"time: {seconds:.1f} s")


def figure(runs, s, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    r = example_run(runs)
    W = r["W_person"]
    sep = r["separation"]
    wmax = np.abs(W).max()
    fig, axes = plt.subplots(6, 1, figsize=(11.5, 10.5))
    for u, ax in enumerate(axes):
        ax.set_facecolor("0.55")
        for row, off in enumerate((0, 12)):
            for c in range(12):
                w = W[off + c, u]
                side = 0.92 * np.sqrt(abs(w) / wmax)
                ax.add_patch(Rectangle((c - side / 2, -row - side / 2), side, side,
                                       fc="white" if w > 0 else "black", ec="none"))
        ax.set_xlim(-0.6, 11.6)
        ax.set_ylim(-1.6, 0.6)
        ax.set_aspect("equal")
        ax.set_xticks(range(12))
        ax.set_yticks([0, -1])
        ax.set_yticklabels(["English", "Italian"], fontsize=8)
        ax.tick_params(length=0)
        if u == 0:
            ax.set_xticks(range(12))
            ax.xaxis.tick_top()
            ax.set_xticklabels([f"{e}\n{i}" for e, i in zip(ENGLISH, ITALIAN)], fontsize=7)
        else:
            ax.set_xticklabels([])
        ax.text(-0.17, 0.5, f"unit {u + 1}", transform=ax.transAxes, ha="left",
                va="center", fontsize=10, fontweight="bold")
        ax.text(12.0, -0.5, "η²  nationality {:.2f}\n     generation {:.2f}\n     branch {:.2f}"
                .format(*sep[u]), fontsize=8, va="center", family="monospace")
        for x in (3.5, 9.5):
            ax.axvline(x, color="0.45", lw=0.8)
    fig.suptitle(f"Weights from the 24 people to the 6 person-encoding units (split {r['seed']}: "
                 f"{r['train_correct']}/100 training, {r['test_correct']}/4 held-out queries right)"
                 f"\nwhite +, black −, area ∝ |w| (largest {wmax:.1f}); over {s['splits']} splits "
                 f"{s['test_total']} of {s['test_queries']} held-out queries right", fontsize=10)
    fig.subplots_adjust(left=0.15, right=0.82, top=0.88, bottom=0.01, hspace=0.12)
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
