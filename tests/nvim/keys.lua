-- A user's own setup around Hearth's client: an on_attach of theirs, <Tab> with and
-- without a snippet, and a server command that cannot be run. Writes what it saw as
-- JSON to $NVIM_TEST_OUT. Run by tests/test_neovim.py.
local out = {}
local function done(ok, msg)
  out.ok, out.error = ok, msg
  local f = assert(io.open(vim.env.NVIM_TEST_OUT, 'w'))
  f:write(vim.json.encode(out))
  f:close()
  vim.cmd('qa!')
end
local notified = {}
vim.notify = function(msg) table.insert(notified, msg) end

local ok, err = xpcall(function()
  require('hearth').setup({ inline_completion = true })
  vim.lsp.config('hearth', {
    cmd = vim.json.decode(vim.env.NVIM_TEST_CMD),
    on_attach = function() out.users_on_attach = true end,
  })
  vim.lsp.enable('hearth')
  vim.cmd.edit(vim.env.NVIM_TEST_FILE)
  local bufnr = vim.api.nvim_get_current_buf()
  assert(vim.wait(60000, function()
    return #vim.lsp.get_clients({ bufnr = bufnr, name = 'hearth' }) > 0
      and vim.fn.exists(':HearthReview') == 2
  end, 50), 'no :HearthReview after the attach')
  out.commands = vim.tbl_keys(vim.api.nvim_buf_get_commands(bufnr, {}))
  local function keys(k) vim.api.nvim_feedkeys(vim.keycode(k), 'mtx', false) end
  -- No suggestion showing: <Tab> jumps to a snippet's next placeholder, as before.
  vim.api.nvim_buf_set_lines(bufnr, 0, 0, false, { '' })
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  keys('i<Cmd>lua vim.snippet.expand("foo($1, bar$2)$0")<CR>x<Tab>Z<Esc>')
  out.snippet_line = vim.api.nvim_buf_get_lines(bufnr, 0, 1, false)[1]
  vim.snippet.stop()
  vim.api.nvim_buf_set_lines(bufnr, 0, 1, false, { '' })
  keys('0i<Tab>y<Esc>')
  out.plain_line = vim.api.nvim_buf_get_lines(bufnr, 0, 1, false)[1]
  -- A command that cannot be run: said once, not only in the log.
  vim.lsp.config('hearth', { cmd = { '/nonexistent/hearth', 'serve' } })
  require('hearth')._checked = nil
  vim.cmd.edit(vim.env.NVIM_TEST_OTHER_FILE)
  out.notified = notified
end, debug.traceback)
done(ok, err)
