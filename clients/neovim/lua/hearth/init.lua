-- Buffer-local commands for the Hearth language server. All behaviour lives in
-- the server: each command is one `workspace/executeCommand`.
local M = {}

--- Options (`require('hearth').setup{...}` before the server attaches):
---   inline_completion  ghost text from the server (textDocument/inlineCompletion); off
---                      unless you opt in. Needs Neovim >= 0.12.
---   accept             the insert-mode key that accepts the ghost text (falls back to
---                      the key itself when there is none).
M.options = { inline_completion = false, accept = '<Tab>' }

function M.setup(opts)
  M.options = vim.tbl_extend('force', M.options, opts or {})
end

--- Ghost text in this buffer, with the accept mapping (opt-in: `inline_completion`).
function M.enable_inline_completion(client, bufnr)
  if not (M.options.inline_completion and vim.lsp.inline_completion) then return false end
  if not client:supports_method('textDocument/inlineCompletion', bufnr) then return false end
  vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  local key = M.options.accept
  -- Without a suggestion the key does what it did before: Neovim's own <Tab> jumps
  -- to a snippet's next placeholder, a completion plugin's selects its next item.
  local before = vim.fn.maparg(key, 'i', false, true)
  if before.desc == 'Hearth: accept the suggestion' then before = {} end -- (a new client)
  vim.keymap.set('i', key, function()
    if vim.lsp.inline_completion.get({ bufnr = bufnr }) then return '' end
    if before.callback then
      if before.expr == 1 then return before.callback() or '' end
      vim.schedule(before.callback) -- (an expr mapping may not change the text itself)
      return ''
    end
    if before.rhs and before.rhs ~= '' then
      return vim.api.nvim_replace_termcodes(before.rhs, true, true, true)
    end
    return key
  end, { buffer = bufnr, expr = true, desc = 'Hearth: accept the suggestion' })
  return true
end

local function notify(msg, level)
  vim.notify('Hearth: ' .. msg, level or vim.log.levels.INFO)
end

local function exec(client, bufnr, command, args, on_result)
  client:request('workspace/executeCommand', { command = command, arguments = { args } },
    function(err, result)
      if err then
        notify(err.message or tostring(err), vim.log.levels.WARN)
        return
      end
      if on_result then on_result(result) end
    end, bufnr)
end

local function cursor_line()
  return vim.api.nvim_win_get_cursor(0)[1] - 1
end

--- :HearthReview [range]: the file, or the selected lines; findings arrive as diagnostics.
function M.review(client, bufnr, opts)
  local args = { uri = vim.uri_from_bufnr(bufnr), scope = 'file' }
  if opts and opts.range and opts.range > 0 then
    args = { uri = args.uri, scope = 'selection', start = opts.line1 - 1, ['end'] = opts.line2 - 1 }
  end
  exec(client, bufnr, 'hearth.review', args, function(result)
    vim.notify(result.summary)
  end)
end

--- :HearthTests: tests for the function under the cursor; passing ones are inserted.
function M.tests(client, bufnr)
  exec(client, bufnr, 'hearth.generateTests', { uri = vim.uri_from_bufnr(bufnr), line = cursor_line() },
    function(result)
      vim.notify(result.summary)
    end)
end

--- :HearthDocstring[!]: document the function under the cursor (! regenerates).
function M.docstring(client, bufnr, opts)
  exec(client, bufnr, 'hearth.generateDocstring', {
    uri = vim.uri_from_bufnr(bufnr), line = cursor_line(), regenerate = opts and opts.bang or false,
  })
end

--- :HearthDocumentFile[!]: a summary of the whole file at its top (! regenerates).
function M.document_file(client, bufnr, opts)
  exec(client, bufnr, 'hearth.documentFile', {
    uri = vim.uri_from_bufnr(bufnr), regenerate = opts and opts.bang or false,
  })
end

--- :HearthCommitMessage: in a `gitcommit` buffer, fill the message above git's comments;
--- elsewhere, show it.
function M.commit_message(client, bufnr)
  local repo = vim.fs.root(bufnr, '.git') or client.root_dir
  exec(client, bufnr, 'hearth.generateCommitMessage', { repo = repo }, function(result)
    local lines = vim.split(result.message, '\n', { plain = true })
    if vim.bo[bufnr].filetype == 'gitcommit' then
      local first = vim.api.nvim_buf_get_lines(bufnr, 0, 1, false)[1] or ''
      local replace = first == '' and 1 or 0 -- an empty first line is the message slot
      vim.api.nvim_buf_set_lines(bufnr, 0, replace, false, lines)
    else
      notify(result.message)
    end
    for _, n in ipairs(result.notices or {}) do notify(n) end
  end)
end

--- :HearthTrust[!]: trust this workspace folder (kept in Hearth's trust file), so its
--- .hearth.toml may set programs to run and servers to use; ! stops trusting it.
function M.trust(client, bufnr, opts)
  local untrust = opts and opts.bang or false
  exec(client, bufnr, 'hearth.trustFolder', {
    uri = client.root_dir and vim.uri_from_fname(client.root_dir) or nil,
    persist = true, trusted = not untrust,
  }, function(result)
    notify(untrust and 'this folder is no longer trusted'
      or ('trusted: ' .. table.concat(result.trusted or {}, ', ')))
  end)
end

local function progress_handler(ev)
  local value = ev.data and ev.data.params and ev.data.params.value
  if type(value) ~= 'table' then return end
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  if not client or client.name ~= 'hearth' then return end
  if value.kind == 'end' then
    vim.api.nvim_echo({ { ('Hearth: %s'):format(value.message or 'done') } }, false, {})
  elseif value.title or value.message then
    local pct = value.percentage and (' %d%%'):format(value.percentage) or ''
    vim.api.nvim_echo({ { ('Hearth: %s%s %s'):format(value.title or '', pct, value.message or '') } },
      false, {})
  end
end

--- Once per session, for a buffer Hearth would attach to: a notice when the server's
--- command cannot be run (Neovim's own message goes to its log only).
function M.check_command(filetype)
  if M._checked or not (vim.lsp.is_enabled and vim.lsp.is_enabled('hearth')) then return end
  local config = vim.lsp.config.hearth
  if not (config and vim.tbl_contains(config.filetypes or {}, filetype)) then return end
  M._checked = true
  local cmd = config.cmd
  if type(cmd) == 'table' and cmd[1] and vim.fn.executable(cmd[1]) == 0 then
    notify(('`%s` is not executable, so the server cannot start: install Hearth (`make setup`) '
      .. "or point to it with vim.lsp.config('hearth', { cmd = { '/path/to/hearth', 'serve' } })")
      :format(cmd[1]), vim.log.levels.WARN)
  end
end

function M.on_attach(client, bufnr)
  -- Called from lsp/hearth.lua's on_attach and from the LspAttach autocmd of
  -- plugin/hearth.lua (a user's own on_attach replaces the first): once per buffer.
  local attached = vim.b[bufnr].hearth_attached_client
  if attached == client.id then return end
  vim.b[bufnr].hearth_attached_client = client.id
  local function cmd(name, fn, opts)
    vim.api.nvim_buf_create_user_command(bufnr, name, function(o) fn(client, bufnr, o) end, opts or {})
  end
  cmd('HearthReview', M.review, { range = true, desc = 'Hearth: review the file or selection' })
  cmd('HearthTests', M.tests, { desc = 'Hearth: tests for the function under the cursor' })
  cmd('HearthDocstring', M.docstring, { bang = true, desc = 'Hearth: document the function' })
  cmd('HearthDocumentFile', M.document_file, { bang = true, desc = 'Hearth: summarise the file' })
  cmd('HearthCommitMessage', M.commit_message, { desc = 'Hearth: write the commit message' })
  cmd('HearthTrust', M.trust, { bang = true, desc = 'Hearth: trust this folder (! to stop)' })
  M.enable_inline_completion(client, bufnr)
  if not M._progress then
    M._progress = vim.api.nvim_create_autocmd('LspProgress', { callback = progress_handler })
  end
end

return M
