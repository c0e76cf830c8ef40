"""The human studies of ``camscope serve --study`` (class discrimination, trust): the blind
trials, the participants' sessions, their answers and summaries (``camscope study summarize``)
and the study page's application (:mod:`.app`, the only module here that imports FastAPI).
"""
