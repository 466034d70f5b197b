-- Sourced at startup when clients/neovim is on 'runtimepath'.
local group = vim.api.nvim_create_augroup('hearth', { clear = true })

-- The buffer commands on every attach, whatever `on_attach` a user's
-- vim.lsp.config('hearth', {...}) sets: it replaces the one of lsp/hearth.lua.
vim.api.nvim_create_autocmd('LspAttach', {
  group = group,
  callback = function(ev)
    local client = vim.lsp.get_client_by_id(ev.data.client_id)
    if client and client.name == 'hearth' then require('hearth').on_attach(client, ev.buf) end
  end,
})

-- Neovim does not start a server whose command is not executable, and says so only in
-- its log: the user saw nothing at all.
vim.api.nvim_create_autocmd('FileType', {
  group = group,
  callback = function(ev)
    require('hearth').check_command(ev.match)
  end,
})
