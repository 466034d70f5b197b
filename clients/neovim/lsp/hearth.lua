-- Hearth, a local AI language server: review, tests, docstrings, commit messages.
--
-- Neovim >= 0.11:  vim.lsp.enable('hearth')  (this folder on 'runtimepath').
-- Settings are Hearth's own (see docs/configuration.md), camelCase, under `hearth`.
-- This config sends none: what the editor sends is the highest layer, so a default
-- here would override `.hearth.toml` and `HEARTH_*` variables. Set only what you
-- mean to force, e.g.
--   vim.lsp.config('hearth', { settings = { hearth = { review = { onSave = 'off' } } } })
-- Buffer-local commands (:HearthReview, :HearthTests, :HearthDocstring,
-- :HearthCommitMessage) come from lua/hearth/init.lua on attach. Ghost text (inline
-- completion, Neovim >= 0.12) is opt-in: require('hearth').setup({ inline_completion = true })
-- before the server attaches; <Tab> (option `accept`) takes the suggestion.

---@type vim.lsp.Config
return {
  cmd = { 'hearth', 'serve' },
  filetypes = {
    'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
    'go', 'rust', 'java', 'c', 'cpp', 'gitcommit',
  },
  root_markers = { '.hearth.toml', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml', '.git' },
  on_attach = function(client, bufnr)
    require('hearth').on_attach(client, bufnr)
  end,
}
