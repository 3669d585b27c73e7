# (filled by the work on issue 5)
