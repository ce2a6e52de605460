"""Building what runs pipelines elsewhere: a wheel of the running pipecast (:mod:`.wheel`)."""
