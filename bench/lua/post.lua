-- Closed-loop POST load: the same body (and, when given, signature) on every request.
-- Env: BENCH_BODY_FILE (the body), BENCH_SIGNATURE (X-Webhook-Signature value, optional).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local signature = os.getenv("BENCH_SIGNATURE")
if signature and signature ~= "" then
  wrk.headers["X-Webhook-Signature"] = signature
end
