-- wrk script: POST unique pledges to one campaign (or, with PATH=/bench/insert, a trivial
-- insert). Each thread numbers its own requests; it counts the answers it got.
local counter = 0
local thread_id = 0
redirects, others = 0, 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  path = os.getenv("SURGE_PATH")
  run = os.getenv("SURGE_RUN") or "r"
end

function request()
  counter = counter + 1
  local key = string.format("%s-%d-%08d-surge-key", run, tid, counter)
  local body
  if path == "/bench/insert" then
    body = ""
  else
    local amount = 1 + counter % 50
    -- The confirmation step's hidden field: the exact minor units shown.
    body = "amount=" .. amount .. "&confirmed_amount=" .. (amount * 100) ..
      "&card_number=4242424242424242" ..
      "&email=s" .. tid .. "x" .. counter .. "%40example.org&visibility=anonymous" ..
      "&currency_code=EUR&submission_key=" .. key
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function response(status, headers, body)
  if status == 302 or status == 200 then redirects = redirects + 1 else others = others + 1 end
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("redirects")
    bad = bad + thread:get("others")
  end
  io.write(string.format("SURGE ok=%d other=%d\n", ok, bad))
end
