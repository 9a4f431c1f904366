// Element builders for the dashboard's modules. Text goes in through textContent and values
// through setAttribute, never as HTML: nothing the API returns can become markup.

const SVG = 'http://www.w3.org/2000/svg'

export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  if (text !== undefined) node.textContent = text
  return node
}

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  if (text !== undefined) node.textContent = text
  return node
}
