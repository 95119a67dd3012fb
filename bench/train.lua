-- The traffic bench/pgo.sh trains the profile-guided build on: a mix of the requests an ingress
-- answers, the benchmarks' kind of request among them. wrk sends these in turn (one list for its
-- one thread, so in turn across the connections):
--
--   a public host:        GET / and a page of 16 KiB with a query, POST with a JSON body,
--                         and a request that brings its own identity and forwarding headers
--                         (which the proxy removes);
--   a protected host:     GET and POST with a session cookie and a cookie of the application,
--                         and GET without a session (the redirect to the sign-in);
--   a host whose policy refuses the session (403), and a host no route serves (404).
--
-- The hosts are those of bench/pgo.sh's configuration; the session cookies come from the
-- environment (bench/pgo.sh sets them). For the bare Pingora, which has one upstream and no
-- routes, TRAIN_BARE=1 keeps only the requests a plain proxy passes on (every host's request
-- goes to the upstream alike).
local public = "www.train.test"
local protected = "app.train.test"
local refused = "admin.train.test"
local unknown = "nowhere.train.test"
local session = os.getenv("TRAIN_SESSION") or ""
local refused_session = os.getenv("TRAIN_REFUSED_SESSION") or ""
local bare = os.getenv("TRAIN_BARE") == "1"

local browser = {
  ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) train/1.0",
  ["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
  ["Accept-Encoding"] = "gzip, deflate",
  ["Accept-Language"] = "en-GB,en;q=0.7",
}

local function with(base, extra)
  local h = {}
  for k, v in pairs(base) do h[k] = v end
  for k, v in pairs(extra) do h[k] = v end
  return h
end

local body = '{"name":"widget","size":3,"tags":["a","b","c"],"note":"' .. string.rep("x", 160) .. '"}'
local json = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }

local list = {}
local function add(method, host, path, headers, payload)
  table.insert(list, wrk.format(method, path, with(headers, { Host = host }), payload))
end

add("GET", public, "/", browser)
add("GET", public, "/static/page.html?v=42&lang=en", browser)
add("POST", public, "/api/items", json, body)
add("GET", public, "/api/items/7", with(json, {
  ["X-Forwarded-For"] = "203.0.113.9",
  ["X-Pomerium-Jwt-Assertion"] = "forged",
  ["X-Pomerium-Claim-Email"] = "forged@example.com",
}))
if bare then
  add("GET", protected, "/", browser)
  add("POST", protected, "/api/items", json, body)
else
  local cookie = "_pomerium=" .. session .. "; theme=dark"
  add("GET", protected, "/", with(browser, { Cookie = cookie }))
  add("GET", protected, "/api/me?fields=email,groups", with(json, { Cookie = cookie }))
  add("POST", protected, "/api/items", with(json, { Cookie = cookie }), body)
  add("GET", protected, "/reports?month=11", browser)
  add("GET", refused, "/", with(browser, { Cookie = "_pomerium=" .. refused_session }))
  add("GET", unknown, "/", browser)
end

local i = 0
request = function()
  i = i % #list + 1
  return list[i]
end
