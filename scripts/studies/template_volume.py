"""Do rescaled templates start nearer the true volume? |ln(V/V_target)| of the nearest template,
substituted as is and rescaled (Analogue.rescaled), on every 8th of the first 800 held-out validation
structures (atom count given), unrelaxed:

    python scripts/studies/template_volume.py
"""

import time, numpy as np, warnings
warnings.filterwarnings("ignore")
from diffcrystal.checkpoint import bundled_analogue_table
from diffcrystal.prediction import load_library
from diffcrystal.ranked_evaluation import held_out_validation

ck, gen, val = held_out_validation("mp20_csp")
lib = load_library(bundled_analogue_table(ck), ck)
targets = val[::8][:100]

raw, rls, fails = [], [], 0
t0=time.time()
for t in targets:
    a = lib.without({t.label}).analogues(t.composition, t.num_atoms)
    if not a: continue
    sub = a[0].substituted()
    vt = abs(np.linalg.det(t.lattice)) / t.num_atoms
    vs = abs(np.linalg.det(sub.lattice)) / sub.num_atoms
    raw.append(abs(np.log(vs / vt)))
    rescaled = a[0].rescaled()
    rls.append(abs(np.log(abs(np.linalg.det(rescaled.lattice)) / rescaled.num_atoms / vt)))
print(len(raw), "median |log V ratio| raw", np.median(raw), "rls", np.median(rls), "mean", np.mean(raw), np.mean(rls), "fails", fails, time.time()-t0)
print("share >0.15: raw", np.mean(np.array(raw)>0.15), "rls", np.mean(np.array(rls)>0.15))
