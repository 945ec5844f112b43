"""Everything that exists only for the past, in one place.

The core modules never mention older versions: what earlier releases wrote is read here
(``state_dict`` pre-hooks, checkpoint upgrades) and the spellings removed in 1.0 are
answered here with an error that names the current one. Each module holds one kind of
past:

- :mod:`selfdamage._compat.removed`: the removed spellings and their errors;
- :mod:`selfdamage._compat.module_names`: removed and moved module names;
- :mod:`selfdamage._compat.wrapper_state`: wrapper state dicts and pickles of 0.1 and 0.2;
- :mod:`selfdamage._compat.compact_state`: compact twins pickled by 0.2;
- :mod:`selfdamage._compat.adapter_state`: adapter state dicts without method-state keys;
- :mod:`selfdamage._compat.study_files`: the study's checkpoints and settings records.
"""
