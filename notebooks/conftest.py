"""The test command runs the lessons with nbval in the quick setting: ``LAB_QUICK=1``
shrinks their training runs and sample sizes (each lesson reads it in its first cell).
``LAB_QUICK=0 pytest notebooks`` runs them at their classroom setting instead. The
kernels nbval starts inherit this process's environment."""
import os

os.environ.setdefault("LAB_QUICK", "1")
os.environ.setdefault("LAB_DEVICE", "cpu")        # as the tests: the CPU even where there is a GPU
os.environ.setdefault("OMP_NUM_THREADS", "1")     # a shared 2-core machine: one torch thread each
