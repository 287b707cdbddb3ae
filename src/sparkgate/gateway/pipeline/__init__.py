"""How the gateway decides where each call goes: a pipeline of small stages.

:class:`~.decide.CallPipeline` runs them in order, each at most once per call:

1. :mod:`.identify` — who makes the call;
2. :mod:`.lookup` — where its session lives (the affinity lookup);
3. :mod:`.routing_info` — a new session's team and environment;
4. :mod:`.admit` — authorization and rate limits;
5. :mod:`.releases` — a placed session's releases already on their way (answered here);
6. :mod:`.placement` — a new session placed on a driver.

It returns an *intent* (:mod:`.intents`): forward to a driver, answer, refuse, or wait for the
rest of the decision. Only the engine turns intents into bytes. When the driver has answered,
:mod:`.after_call` applies what the answer changes (a release, a clone). Audit and telemetry watch
through one :class:`~.hook.PipelineHook`.
"""
