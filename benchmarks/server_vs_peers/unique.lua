-- infer.lua's request with an id of its own on every call ("<WRK_ID_PREFIX><n>") and WRK_ROWS
-- copies of its row (default 1): every request is a new entry in the server's feedback window.
-- Needs WRK_DIR (this directory) to load infer.lua's headers and result line.
dofile(os.getenv("WRK_DIR") .. "/infer.lua")

local rows = tonumber(os.getenv("WRK_ROWS") or "1")
local prefix = os.getenv("WRK_ID_PREFIX") or "u-"
local row = wrk.body:match('"data":(%b[])')  -- infer.lua's one row
local data = string.rep(row, rows, ",")
local tail = '","inputs":[{"name":"input-0","shape":[' .. rows .. ',20],"datatype":"FP64","data":[' ..
  data .. ']}]}'
local n = 0

request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"id":"' .. prefix .. n .. tail)
end
