"""What the Snakemake workflow does besides calling the science: plain, tested Python.

The rules and scripts in ``workflow/`` stay thin; the run's bookkeeping lives
here: the config's checks beyond its schema (:mod:`enhance_hmi.workflow.run_config`),
the run's acquisition keys, range plan and open batches
(:mod:`enhance_hmi.workflow.run_state`), the quarantine of frames that could
not be enhanced (:mod:`enhance_hmi.workflow.quarantine`), the run's status file
(:mod:`enhance_hmi.workflow.run_status`) and the owner of a working directory's
Snakemake lock (:mod:`enhance_hmi.workflow.run_lock`). Importing it loads no torch.
"""
