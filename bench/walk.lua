-- wrk script for bench/scale.sh: each request carries the next cookie value
-- of a file (one per line), so a file of distinct sessions makes every
-- request a different session. Counts every answer other than 200.
--
--   wrk ... -s bench/walk.lua URL -- FILE FIRST COUNT
--
-- FILE: cookie values; FIRST: lines to skip; COUNT: lines to use (the walk
-- wraps around them). Prints bench/result.lua's RESULT line, with the non-200
-- answers in place of wrk's status errors (a 302 to the login is wrong too).

-- bench/result.lua, beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "result.lua")

local threads = {}
local cookies, n, i = {}, 0, 1
local headers = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    local path, first, count = args[1], tonumber(args[2]), tonumber(args[3])
    local line = 0
    for value in io.lines(path) do
        if line >= first then
            n = n + 1
            cookies[n] = value
            if n >= count then break end
        end
        line = line + 1
    end
    if n == 0 then error("no cookie values in " .. path .. " after line " .. first) end
    for k, v in pairs(wrk.headers) do headers[k] = v end
    bad = 0
end

function request()
    headers["Cookie"] = "_authgate=" .. cookies[i]
    i = i % n + 1
    return wrk.format(nil, nil, headers)
end

function response(status)
    if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
    local wrong = 0
    for _, thread in ipairs(threads) do wrong = wrong + thread:get("bad") end
    result_line(summary, latency, wrong)
end
