-- Paced ticket creates for latency runs: each request is a fresh ticket whose subject is
-- "bench <send time in epoch microseconds>" (the bench sink turns it into a latency),
-- signed per request with HMAC-SHA256 from the libcrypto wrk already links.
-- Pacing is a schedule, not a fixed pause: every request takes the next free slot
-- 1/rate s after the previous one, so slow answers do not lower the rate (as long as
-- enough connections are open). Each connection's first request goes out at connect time,
-- all at once, so those are sent unstamped: they are not measured.
-- Env: BENCH_SECRET, BENCH_RATE (requests/s for this thread), BENCH_CONNECTIONS.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
]]
local ok, crypto = pcall(function() local _ = ffi.C.HMAC; return ffi.C end)
if not ok then crypto = ffi.load("libcrypto.so.3") end

local secret = os.getenv("BENCH_SECRET") or ""
local interval_ms = 1000 / tonumber(os.getenv("BENCH_RATE") or "100")
local unstamped = tonumber(os.getenv("BENCH_CONNECTIONS") or "0")
local tv = ffi.new("bench_timeval")
local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")
local next_ms = nil

local function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local function hex_hmac(body)
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, body, #body, md, md_len)
  local out = {}
  for i = 0, 31 do out[i + 1] = string.format("%02x", md[i]) end
  return table.concat(out)
end

function request()
  local subject
  if unstamped > 0 then
    unstamped = unstamped - 1
    subject = "bench first request of a connection"
  else
    subject = "bench " .. string.format("%.0f", now_us())
  end
  local body = '{"event":"ticket.create","data":{"subject":"' .. subject .. '",' ..
    '"message":"The export button does nothing since this morning; we need the report today.",' ..
    '"customer_email":"bench@example.com","customer_name":"Bench Client","priority":"high"}}'
  local headers = {["Content-Type"] = "application/json"}
  if secret ~= "" then headers["X-Webhook-Signature"] = hex_hmac(body) end
  return wrk.format("POST", nil, headers, body)
end

function delay()
  local now = now_us() / 1000
  -- After a stall longer than a second, start the schedule afresh instead of bursting.
  if next_ms == nil or next_ms < now - 1000 then next_ms = now end
  next_ms = next_ms + interval_ms
  return math.max(0, math.floor(next_ms - now))
end
