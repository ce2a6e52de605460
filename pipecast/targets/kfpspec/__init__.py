"""The KFP pipeline IR (PipelineSpec, schema 2.1.0) shared by the ``kubeflow`` and ``vertex`` targets.

Both engines run the same IR YAML, so one builder (:mod:`.builder`) lowers pipecast's IR to it and
each target only says how its engine differs (:class:`.builder.KfpFlavor`): Kubeflow Pipelines reads
the Kubernetes platform spec (secrets, node selectors, tolerations, timeouts), Vertex AI does not and
picks machines from accelerator names of its own. :mod:`.references` checks what the protobuf alone
cannot (dangling task, component, executor and parameter references). The submit clients
(:mod:`.kubeflow_api`, :mod:`.vertex_api`) import their SDKs lazily.
"""
