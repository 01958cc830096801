-- Paced ticket creates for latency runs: each request is a fresh ticket whose subject is
-- "bench <send time in epoch microseconds>" (the bench sink turns it into a latency),
-- signed per request with HMAC-SHA256 from the libcrypto wrk already links.
-- Env: BENCH_SECRET, BENCH_DELAY_MS (pause per connection between requests).
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
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local tv = ffi.new("bench_timeval")
local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")

local function hex_hmac(body)
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, body, #body, md, md_len)
  local out = {}
  for i = 0, 31 do out[i + 1] = string.format("%02x", md[i]) end
  return table.concat(out)
end

function request()
  ffi.C.gettimeofday(tv, nil)
  local sent_us = string.format("%.0f", tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec))
  local body = '{"event":"ticket.create","data":{"subject":"bench ' .. sent_us .. '",' ..
    '"message":"The export button does nothing since this morning; we need the report today.",' ..
    '"customer_email":"bench@example.com","customer_name":"Bench Client","priority":"high"}}'
  local headers = {["Content-Type"] = "application/json"}
  if secret ~= "" then headers["X-Webhook-Signature"] = hex_hmac(body) end
  return wrk.format("POST", nil, headers, body)
end

function delay()
  return pause
end
