"""The KFP pipeline IR (PipelineSpec, schema 2.1.0) shared by the ``kubeflow`` and ``vertex`` targets.

Both engines run the same IR YAML, so one builder (:mod:`.builder`) lowers pipecast's IR to it and
each target only says how its engine differs (:class:`.builder.KfpFlavor`): Kubeflow Pipelines reads
the Kubernetes platform spec (:mod:`.platform`: secrets, node selectors, tolerations, image pull secrets,
timeouts), Vertex AI does not and picks machines from accelerator names of its own. Their typed settings are
in :mod:`.settings`. :mod:`.outputs` declares what each task produces, so the engine's UI shows it.
:mod:`.references` checks what the protobuf alone cannot (dangling task, component,
executor and parameter references) on every compile. The submit modules (:mod:`.kubeflow_api`,
:mod:`.vertex_api`) import their SDKs lazily and share the retries of :mod:`.retrying`.
"""
