-- clients/neovim and the settings layers: the client sends only what the user set, so
-- `.hearth.toml` and HEARTH_* variables are what the server uses. Writes what it saw as
-- JSON to $NVIM_TEST_OUT. Run by tests/test_neovim.py.
--
-- The workspace's `.hearth.toml` says `review.onSave = "file"`; commit.style = "plain"
-- comes from HEARTH_COMMIT_STYLE or from the user's own vim.lsp.config settings
-- ($NVIM_TEST_SETTINGS). The scripted model answers a plain message first, then
-- the same finding for each reviewed function.
local out = { notes = {} }
local function wait(cond, ms) return vim.wait(ms or 60000, cond, 50) end
local function done(ok, msg)
  out.ok, out.error = ok, msg
  local f = assert(io.open(vim.env.NVIM_TEST_OUT, 'w'))
  f:write(vim.json.encode(out))
  f:close()
  vim.cmd('qa!')
end

local notify = vim.notify
vim.notify = function(msg, level, opts) -- kept for the failure message
  table.insert(out.notes, tostring(msg))
  return notify(msg, level, opts)
end

local ok, err = xpcall(function()
  local config = { cmd = vim.json.decode(vim.env.NVIM_TEST_CMD) }
  if vim.env.NVIM_TEST_SETTINGS then
    config.settings = vim.json.decode(vim.env.NVIM_TEST_SETTINGS)
  end
  vim.lsp.config('hearth', config)
  vim.lsp.enable('hearth')
  vim.cmd.edit(vim.env.NVIM_TEST_FILE)
  local bufnr = vim.api.nvim_get_current_buf()
  assert(wait(function() return #vim.lsp.get_clients({ bufnr = bufnr, name = 'hearth' }) > 0 end),
    'hearth did not attach')
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'hearth' })[1]
  -- What the client sends: initializationOptions, and the `settings` it answers
  -- workspace/configuration and sends in workspace/didChangeConfiguration with.
  out.init_options = client.config.init_options
  out.sends_settings = next(client.settings) ~= nil
  out.settings = out.sends_settings and client.settings or nil
  assert(wait(function()
    local r = client:request_sync('workspace/executeCommand', { command = 'hearth.status' }, 5000, bufnr)
    return r and r.result and r.result.model == 'ready'
  end), 'model not ready')

  -- The staged change's message, in the plain style (a Conventional Commits check
  -- would refuse it).
  vim.cmd.edit(vim.env.NVIM_TEST_COMMIT_FILE)
  vim.bo.filetype = 'gitcommit'
  local cbuf = vim.api.nvim_get_current_buf()
  assert(wait(function() return #vim.lsp.get_clients({ bufnr = cbuf, name = 'hearth' }) > 0 end),
    'hearth did not attach to the commit buffer')
  vim.cmd('HearthCommitMessage')
  wait(function() return (vim.api.nvim_buf_get_lines(cbuf, 0, 1, false)[1] or '') ~= '' end)
  out.commit_lines = vim.api.nvim_buf_get_lines(cbuf, 0, 2, false)

  -- :write without a change: `review.onSave = "changed"` reviews nothing (the file is
  -- as in HEAD), `file` reviews every function.
  vim.cmd.buffer(bufnr)
  vim.cmd('write')
  wait(function() return #vim.diagnostic.get(bufnr) > 0 end)
  out.diagnostics = vim.tbl_map(function(d)
    return { lnum = d.lnum, source = d.source, code = d.code }
  end, vim.diagnostic.get(bufnr))
end, debug.traceback)
done(ok, err)
