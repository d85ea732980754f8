-- wrk script for benches/refresh_load.sh: POST /api/auth/refresh with the
-- refresh tokens listed one per line in $REFRESH_TOKENS.
--
-- REFRESH_MODE=kept (sessions.rotation: false): cycle over the tokens; each
--   stays valid, so requests are built once.
-- REFRESH_MODE=rotated (rotation: true): a queue of current tokens. A request
--   takes the oldest, its 200 answer puts the successor back, so every token
--   is presented exactly once (no grace replays, no reuse detection). With
--   more tokens than connections the queue never runs dry unless refreshes
--   fail; then "starved" is sent, which answers 401 and shows as non-2xx.
-- Read from the environment (not wrk's script arguments) because wrk decides
-- whether to parse answer bodies from whether `response` exists after the
-- script is loaded.

local mode = os.getenv("REFRESH_MODE") or "kept"
local path = os.getenv("REFRESH_PATH") or "/api/auth/refresh"
local token_file = assert(os.getenv("REFRESH_TOKENS"), "set REFRESH_TOKENS to a file of refresh tokens")

local tokens = {}
for line in io.lines(token_file) do
  if line ~= "" then
    tokens[#tokens + 1] = line
  end
end
assert(#tokens > 0, token_file .. " holds no refresh tokens")

local headers = { ["Content-Type"] = "application/json" }

local function refresh(token)
  return wrk.format("POST", path, headers, '{"refreshToken":"' .. token .. '"}')
end

if mode == "rotated" then
  local queue, head, tail = {}, 1, 0
  for _, token in ipairs(tokens) do
    tail = tail + 1
    queue[tail] = token
  end

  function request()
    if head > tail then
      return refresh("starved")
    end
    local token = queue[head]
    queue[head] = nil
    head = head + 1
    return refresh(token)
  end

  function response(status, _, body)
    if status == 200 then
      local successor = body:match('"refreshToken":"([^"]+)"')
      if successor then
        tail = tail + 1
        queue[tail] = successor
      end
    end
  end
elseif mode == "kept" then
  local requests, i = {}, 0

  function init(_)
    for n, token in ipairs(tokens) do
      requests[n] = refresh(token)
    end
  end

  function request()
    i = i % #requests + 1
    return requests[i]
  end
else
  error("REFRESH_MODE must be kept or rotated, not " .. mode)
end
