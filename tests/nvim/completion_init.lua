-- A user's init.lua for the ghost text test: the README's setup, opting in to inline
-- completion (Tab accepts).
vim.opt.runtimepath:prepend(vim.env.NVIM_TEST_CLIENT_DIR)
require('hearth').setup({ inline_completion = true })
vim.lsp.config('hearth', { cmd = vim.json.decode(vim.env.NVIM_TEST_CMD) })
vim.lsp.enable('hearth')
vim.o.shortmess = vim.o.shortmess .. 'I'
vim.o.swapfile = false
