-- Drives a headless Neovim with clients/neovim against Hearth; writes what it saw as
-- JSON to $NVIM_TEST_OUT. Run by tests/test_neovim.py.
local out = { steps = {} }
local function wait(cond, ms) return vim.wait(ms or 60000, cond, 50) end
local function done(ok, msg)
  out.ok, out.error = ok, msg
  local f = assert(io.open(vim.env.NVIM_TEST_OUT, 'w'))
  f:write(vim.json.encode(out))
  f:close()
  vim.cmd('qa!')
end

local ok, err = xpcall(function()
  vim.lsp.config('hearth', { cmd = vim.json.decode(vim.env.NVIM_TEST_CMD) })
  vim.lsp.enable('hearth')
  vim.cmd.edit(vim.env.NVIM_TEST_FILE)
  local bufnr = vim.api.nvim_get_current_buf()
  assert(wait(function() return #vim.lsp.get_clients({ bufnr = bufnr, name = 'hearth' }) > 0 end),
    'hearth did not attach')
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'hearth' })[1]
  out.commands = vim.tbl_keys(vim.api.nvim_buf_get_commands(bufnr, {}))
  -- The model is ready.
  assert(wait(function()
    local r = client:request_sync('workspace/executeCommand', { command = 'hearth.status' }, 5000, bufnr)
    return r and r.result and r.result.model == 'ready'
  end), 'model not ready')

  -- Code actions on the function `parse_price` (line 10).
  vim.api.nvim_win_set_cursor(0, { 10, 4 })
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  params.context = { diagnostics = {} }
  local res = client:request_sync('textDocument/codeAction', params, 10000, bufnr)
  out.actions = vim.tbl_map(function(a) return a.title end, res.result or {})

  -- :HearthDocstring applies the edit through workspace/applyEdit.
  local before = vim.api.nvim_buf_line_count(bufnr)
  vim.cmd('HearthDocstring')
  assert(wait(function() return vim.api.nvim_buf_line_count(bufnr) > before end), 'no docstring')
  out.docstring_lines = vim.api.nvim_buf_get_lines(bufnr, 9, 14, false)

  -- :write: review on save of the changed function -> diagnostics.
  vim.cmd('write')
  assert(wait(function() return #vim.diagnostic.get(bufnr) > 0 end), 'no review diagnostics')
  out.diagnostics = vim.tbl_map(function(d)
    return { lnum = d.lnum, col = d.col, source = d.source, code = d.code, message = d.message }
  end, vim.diagnostic.get(bufnr))

  -- A gitcommit buffer gets the message.
  vim.cmd('!git -C ' .. vim.fn.shellescape(vim.fs.dirname(vim.env.NVIM_TEST_FILE)) .. ' add -A')
  vim.cmd.edit(vim.env.NVIM_TEST_COMMIT_FILE)
  vim.bo.filetype = 'gitcommit'
  local cbuf = vim.api.nvim_get_current_buf()
  assert(wait(function() return #vim.lsp.get_clients({ bufnr = cbuf, name = 'hearth' }) > 0 end),
    'hearth did not attach to the commit buffer')
  vim.cmd('HearthCommitMessage')
  assert(wait(function()
    return (vim.api.nvim_buf_get_lines(cbuf, 0, 1, false)[1] or '') ~= ''
  end), 'no commit message')
  out.commit_lines = vim.api.nvim_buf_get_lines(cbuf, 0, -1, false)
end, debug.traceback)
done(ok, err)
