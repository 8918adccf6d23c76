"""Names of the fields of a crystal batch (torch-geometric ``Data``/``Batch``).

Every module reads and writes batch fields through these constants; no key string literals
elsewhere. Shapes use B = number of crystals in the batch, N = total number of atoms.
"""

LATTICE = "lattice"
"""(B, 3, 3) float: rows are the lattice vectors a, b, c in Å."""

FRAC_COORDS = "frac_coords"
"""(N, 3) float: fractional coordinates in [0, 1)."""

ATOMIC_NUMBERS = "atomic_numbers"
"""(N,) long: atomic numbers 1..100; 0 marks a masked species (de novo diffusion)."""

NUM_ATOMS = "num_atoms"
"""(B,) long: number of atoms of each crystal."""

BATCH = "batch"
"""(N,) long: index of the crystal each atom belongs to (torch-geometric's own key)."""

TIME = "time"
"""(B,) float: diffusion time t/T in (0, 1] given to the denoiser."""

# Denoiser outputs (raw network predictions; the diffusion classes interpret them).
EPS_LATTICE = "eps_lattice"
"""(B, 3, 3) float: predicted lattice noise; rotates as ``L -> L @ R.T``."""

COORD_SCORE = "coord_score"
"""(N, 3) float: predicted (normalised) score of the fractional coordinates; invariant."""

SPECIES_LOGITS = "species_logits"
"""(N, 100) float: logits over atomic numbers 1..100 (column k is Z = k + 1); invariant."""
