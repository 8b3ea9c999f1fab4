"""Background jobs: launching ``wsseg`` commands as processes, the job's side, and the jobs table."""
