import DOMPurify from 'dompurify'
import { Marked } from 'marked'
import { useMemo } from 'react'

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])

// A model's reply is untrusted text. Raw HTML in it is shown as text (never parsed),
// and DOMPurify sanitises whatever markdown produced, as a second wall.
const markdown = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text }) => escapeHtml(text),
  },
})

const BLOCKS = new Set(['P', 'LI', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'BLOCKQUOTE', 'TD', 'TH'])

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer nofollow')
  }
  // Each paragraph finds its own direction: Arabic script right to left, Arabizi left to right.
  if (BLOCKS.has(node.tagName)) node.setAttribute('dir', 'auto')
  if (node.tagName === 'PRE') node.setAttribute('dir', 'ltr')
})

export function renderMarkdown(text) {
  const html = markdown.parse(text || '', { async: false })
  return DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'img', 'iframe'],
    FORBID_ATTR: ['style'],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  })
}

export default function Markdown({ text, className }) {
  const html = useMemo(() => renderMarkdown(text), [text])
  // The only HTML this app inserts, and it has been through the sanitiser above.
  return <div className={className} dir="auto" dangerouslySetInnerHTML={{ __html: html }} />
}
